"""``atlas-ci upload --dry-run`` fails as the real run would (issue 18, section 3), against a
real ``atlas-ci serve``: the same exit code and the same message, for a read-only token and
for a token without write access to the namespace; and "Uploading" is printed only once a
file is really being sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.artifacts import file_build, make_box, run_cli, write_manifest
from tests.integration.registry_admin import admin, new_token
from tests.integration.registry_api import TIMEOUT, create_artifact
from tests.postgres import BACKENDS, fresh_database
from tests.registry_proc import RegistryProcess


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Organization acme (alice writes, carol reads), dave belongs nowhere; acme/web exists."""
    database = fresh_database(request, request.param)
    data = tmp_path_factory.mktemp("dry") / "data"
    with RegistryProcess(data, database=database) as registry:
        admin(registry, "org", "create", "acme")
        tokens = {
            "alice": new_token(registry, "alice"),
            "alice-ro": new_token(registry, "alice", "--read-only"),
            "carol": new_token(registry, "carol"),
            "dave": new_token(registry, "dave"),
        }
        admin(registry, "org", "add-member", "acme", "alice", "--role", "write")
        admin(registry, "org", "add-member", "acme", "carol", "--role", "read")
        create_artifact(registry, "acme", "web")
        yield {"registry": registry, "tokens": tokens}


def _upload(world: dict[str, Any], tmp_path: Path, who: str, artifact: str, *flags: str) -> Any:
    make_box(tmp_path / "out" / "web.box")
    write_manifest(tmp_path, [file_build("vbox", "virtualbox-iso", "virtualbox", ["out/web.box"])])
    return run_cli(
        ["upload", "--artifact", artifact, "--atlas-url", world["registry"].url, *flags],
        tmp_path,
        {"ATLAS_TOKEN": world["tokens"][who]},
    )


def _error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


# (token, artifact): an existing artifact refused at the version POST, a new one at the
# artifact POST; read-only, reader, outsider.
REFUSED = [
    ("alice-ro", "acme/web"),
    ("alice-ro", "acme/new"),
    ("carol", "acme/web"),
    ("carol", "acme/new"),
    ("dave", "acme/web"),
    ("dave", "acme/new"),
    ("dave", "alice/mine"),
]


@pytest.mark.parametrize(("who", "artifact"), REFUSED)
def test_a_dry_run_is_refused_as_the_real_run_is(
    world: dict[str, Any], tmp_path: Path, who: str, artifact: str
) -> None:
    dry = _upload(world, tmp_path / "dry", who, artifact, "--dry-run")
    real = _upload(world, tmp_path / "real", who, artifact)
    assert real.returncode == 4, real.stderr
    assert dry.returncode == 4, dry.stderr
    assert _error(dry.stderr) == _error(real.stderr)
    assert world["tokens"][who] not in dry.stderr + dry.stdout
    # The real run never claimed to be uploading a file it was refused to create.
    assert "Uploading" not in real.stderr


@pytest.mark.parametrize("artifact", ["acme/web", "acme/other", "alice/own"])
def test_a_dry_run_with_write_access_passes(
    world: dict[str, Any], tmp_path: Path, artifact: str
) -> None:
    dry = _upload(world, tmp_path, "alice", artifact, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Dry run: would upload" in dry.stderr
    assert "Uploading" not in dry.stderr


def test_uploading_is_said_once_the_version_exists(world: dict[str, Any], tmp_path: Path) -> None:
    done = _upload(world, tmp_path, "alice", "acme/web")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    uploading = [i for i, line in enumerate(lines) if line.startswith("Uploading ")]
    assert len(uploading) == 1, done.stderr
    assert lines[uploading[0]].startswith("Uploading acme/web/vagrant.box version "), done.stderr


def test_the_write_check_extension_answers_as_a_write_would(world: dict[str, Any]) -> None:
    """atlas-wire §12: announced on every answer; 200 to a writer, the write's own 401/403
    to anyone else, telling a stranger no more than the write would."""
    registry, tokens = world["registry"], world["tokens"]

    def ask(token: str | None, namespace: str) -> requests.Response:
        headers = {} if token is None else {"X-Atlas-Token": token}
        url = f"{registry.url}/api/v1/namespaces/{namespace}/write-access"
        return requests.get(url, headers=headers, timeout=TIMEOUT)

    allowed = ask(tokens["alice"], "acme")
    assert (allowed.status_code, allowed.json()) == (200, {"namespace": "acme", "write": True})
    assert "write-check" in allowed.headers["X-Atlas-Extensions"].split(", ")
    assert ask(tokens["alice"], "alice").status_code == 200
    assert ask(registry.token, "anything").status_code == 200  # the administrator
    refused = {
        ("alice-ro", "acme"): "the token of user alice is read-only",
        ("carol", "acme"): "user carol has no write access to organization acme",
        ("dave", "acme"): "user dave has no write access to namespace acme",
        ("dave", "alice"): "user dave has no write access to namespace alice",
        ("dave", "nobody"): "user dave has no write access to namespace nobody",
    }
    for (who, namespace), reason in refused.items():
        answer = ask(tokens[who], namespace)
        assert (answer.status_code, answer.json()) == (403, {"errors": [reason]}), who
        # The same as the artifact POST into that namespace answers.
        post = requests.post(
            f"{registry.url}/api/v1/artifacts",
            json={"artifact": {"username": namespace, "name": "probe"}},
            headers={"X-Atlas-Token": tokens[who]},
            timeout=TIMEOUT,
        )
        assert (post.status_code, post.json()) == (403, {"errors": [reason]}), who
    assert ask(None, "acme").status_code == 401
    assert ask(tokens["alice"], "%00").status_code == 400
