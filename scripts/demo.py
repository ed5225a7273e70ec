"""The demo: serve, upload a Packer build's box, read it back, check every byte.

Run through ``scripts/demo`` (which makes the virtualenv). Exit 0 only if it all held.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

RUN = "demo-run-0001"


def atlas_ci(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "atlas_ci", *args]
    print("$ atlas-ci " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"demo failed: atlas-ci {args[0]} exited {proc.returncode}")
    return proc


def make_box(path: Path) -> None:
    """A small but real Vagrant box: a gzip'd tar with metadata.json and a disk image."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, data in (
            ("metadata.json", b'{"provider": "virtualbox"}'),
            ("box-disk001.vmdk", os.urandom(256 * 1024) + bytes(768 * 1024)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=6))


def main() -> int:
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="atlas-ci-demo-") as tmp:
        work = Path(tmp)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "atlas_ci",
                "serve",
                "--port",
                "0",
                "--data",
                str(work / "registry"),
                f"--token={token}",  # a urlsafe token may start with "-"
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            if not url.startswith("http://"):
                raise SystemExit("demo failed: the registry did not start")
            print(f"registry listening on {url} (data in a temporary directory)")
            out = work / "output-virtualbox"
            out.mkdir()
            box = out / "web.box"
            make_box(box)
            (work / "packer-manifest.json").write_text(
                json.dumps(
                    {
                        "builds": [
                            {
                                "name": "web",
                                "builder_type": "virtualbox-iso",
                                "build_time": 1700000000,
                                "files": [
                                    {
                                        "name": "output-virtualbox/web.box",
                                        "size": box.stat().st_size,
                                    }
                                ],
                                "artifact_id": "virtualbox",
                                "packer_run_uuid": RUN,
                                "custom_data": {"team": "demo"},
                            }
                        ],
                        "last_run_uuid": RUN,
                    },
                    indent=2,
                )
            )
            env = {**os.environ, "ATLAS_TOKEN": token, "ATLAS_BUILD_ID": "42"}
            manifest = str(work / "packer-manifest.json")
            up = atlas_ci(
                "upload",
                "--artifact",
                "demo/web",
                "--atlas-url",
                url,
                "--manifest",
                manifest,
                "--metadata",
                "version=1.10",
                "--json",
                env=env,
            )
            result = json.loads(up.stdout)
            version = result["version"]
            sent_sha = result["builds"][0]["file"]["sha256"]
            found = atlas_ci(
                "search",
                "--artifact",
                "demo/web",
                "--artifact-type",
                "vagrant.box",
                "--atlas-url",
                url,
                "--metadata",
                "provider=virtualbox",
                "--json",
                env=env,
            )
            versions = json.loads(found.stdout)["versions"]
            if [v["version"] for v in versions] != [version]:
                raise SystemExit(f"demo failed: search found {versions}, expected v{version}")
            request = urllib.request.Request(
                f"{url}/api/v1/artifacts/demo/web/vagrant.box/{version}/file",
                headers={"X-Atlas-Token": token},
            )
            digest = hashlib.sha256()
            with urllib.request.urlopen(request, timeout=30) as resp:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
            local = hashlib.sha256(box.read_bytes()).hexdigest()
            print()
            print(f"  version      {result['id']}")
            print(f"  metadata     {json.dumps(versions[0].get('metadata'), sort_keys=True)}")
            print(f"  sha256 sent  {sent_sha}")
            print(f"  sha256 back  {digest.hexdigest()}")
            print(f"  sha256 local {local}")
            if not (sent_sha == digest.hexdigest() == local):
                raise SystemExit("demo failed: the file read back differs from the box")
            print("\ndemo passed: uploaded, found by search, and read back byte for byte")
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=30)
            if code != 0:
                print(f"registry exited {code}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
