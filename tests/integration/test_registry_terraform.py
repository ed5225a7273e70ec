"""What Terraform's atlas_artifact read, through HashiCorp's own client library (atlas-go)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.registry_api import api, create_artifact, create_version, publish, search
from tests.registry_proc import RegistryProcess

ATLAS_GO = Path("/usr/share/gocode/src/github.com/hashicorp/atlas-go/v1/artifact.go")

_READER = """package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"

	atlas "github.com/hashicorp/atlas-go/v1"
)

// Searches as Terraform's atlas_artifact did, then fetches the library's file URL.
func main() {
	c, err := atlas.NewClient(os.Args[1])
	if err != nil { panic(err) }
	c.Token = os.Getenv("ATLAS_TOKEN")
	vs, err := c.ArtifactSearch(&atlas.ArtifactSearchOpts{
		User: "acme", Name: "web", Type: "vagrant.box", Version: "latest",
		Metadata: map[string]string{"provider": "virtualbox"},
	})
	if err != nil { panic(err) }
	u, err := c.ArtifactFileURL(vs[0])
	if err != nil { panic(err) }
	prefixed, err := atlas.NewClient(os.Args[1] + "/prefix")
	if err != nil { panic(err) }
	p, err := prefixed.ArtifactFileURL(vs[0])
	if err != nil { panic(err) }
	req, _ := http.NewRequest("GET", u.String(), nil)
	req.Header.Set("X-Atlas-Token", c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil { panic(err) }
	h := sha256.New()
	io.Copy(h, resp.Body)
	json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"versions": vs, "file_url": u.String(), "prefixed_file_url": p.String(), "status": resp.StatusCode,
		"sha256": hex.EncodeToString(h.Sum(nil)),
	})
}
"""


def test_every_version_object_carries_its_tag(registry: RegistryProcess) -> None:
    create_artifact(registry, "acme", "web")
    created = create_version(registry, "acme/web/t", file=True)
    assert created["tag"] == "acme/web"
    publish(registry, b"x", "acme/web/t")
    assert [v["tag"] for v in search(registry, "acme/web/t", version="any")] == ["acme/web"]
    pending = api(
        registry, "GET", "/api/v1/artifacts/acme/web/t/search?version=any&include_pending=1"
    ).json()["versions"]
    assert [v["tag"] for v in pending] == ["acme/web", "acme/web"]


def test_atlas_go_reads_tag_version_and_file(registry: RegistryProcess, tmp_path: Path) -> None:
    if shutil.which("go") is None or not ATLAS_GO.exists():
        if os.environ.get("CI"):
            pytest.fail(
                "Go or golang-github-hashicorp-atlas-go-dev is missing; .ci/run installs them"
            )
        pytest.skip("Go or golang-github-hashicorp-atlas-go-dev is not installed (CI runs this)")
    create_artifact(registry, "acme", "web")
    publish(registry, b"old", "acme/web/vagrant.box", metadata={"provider": "virtualbox"})
    publish(registry, b"box bytes", "acme/web/vagrant.box", metadata={"provider": "virtualbox"})
    (tmp_path / "main.go").write_text(_READER)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": "/usr/share/gocode",
        "GOCACHE": str(tmp_path / "gocache"),
        "ATLAS_TOKEN": registry.token,
    }
    out = subprocess.run(
        ["go", "run", str(tmp_path / "main.go"), registry.url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    answer = json.loads(out.stdout)
    [version] = answer["versions"]
    assert version["Tag"] == "acme/web"
    assert version["version"] == 2
    assert version["artifact_type"] == "vagrant.box"
    assert version["file"] is True
    assert version["slug"] == "acme/web/vagrant.box/2"
    assert version["metadata"] == {"provider": "virtualbox"}
    assert answer["file_url"] == registry.url + "/api/v1/artifacts/acme/web/vagrant.box/2/file"
    # The API calls keep a path prefix of the base URL; the file URL drops it.
    assert answer["prefixed_file_url"] == answer["file_url"]
    assert answer["status"] == 200
    assert answer["sha256"] == hashlib.sha256(b"box bytes").hexdigest()
