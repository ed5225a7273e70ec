"""The vagrant-cloud target's pieces alone: its settings, its client on the wire (``responses``),
the provider of a box (from the build or its metadata.json) and the action's inputs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from atlas_ci import action
from atlas_ci.answers import errors_text
from atlas_ci.box_file import MAX_METADATA, provider_from_box
from atlas_ci.box_settings import FALLBACK_WARNING
from atlas_ci.errors import (
    AuthError,
    ConfigError,
    ExitStatus,
    InputFileError,
    RegistryRefused,
)
from atlas_ci.manifest import Artifact
from atlas_ci.publish_box import plan_boxes, provider_of
from atlas_ci.redaction import redact
from atlas_ci.retry import RetryPolicy
from atlas_ci.settings import Inputs, Settings
from atlas_ci.vagrant_cloud import VagrantCloudClient

API = "https://vc.example/api/v1"
TOKEN = "vc-unit-token-0123456789"


def vc_settings(env: dict[str, str] | None = None, **flags: Any) -> Settings:
    flags.setdefault("artifact", "acme/web")
    flags.setdefault("to", "vagrant-cloud")
    flags.setdefault("box_version", "1.0.0")
    flags.setdefault("atlas_url", API)
    return Settings.from_inputs(
        Inputs(**flags), {"VAGRANT_CLOUD_TOKEN": TOKEN} if env is None else env
    )


def client(**flags: Any) -> VagrantCloudClient:
    policy = RetryPolicy(retries=2, max_wait=0, sleep=lambda _s: None, rand=lambda: 0.0)
    return VagrantCloudClient(vc_settings(**flags), policy=policy)


# --- settings -------------------------------------------------------------------------


def test_the_box_version_is_required_for_this_target() -> None:
    with pytest.raises(ConfigError) as caught:
        vc_settings(box_version=None)
    assert caught.value.exit_code == ExitStatus.CONFIG
    assert "--box-version must be set" in caught.value.message


@pytest.mark.parametrize("version", ["v1.0", "1..0", "1.0-beta", "1.0/2", "1.0 2"])
def test_a_version_vagrant_would_refuse_is_a_config_error(version: str) -> None:
    with pytest.raises(ConfigError, match="not a box version Vagrant accepts"):
        vc_settings(box_version=version)


def test_vagrant_cloud_token_wins_and_atlas_token_is_the_warned_fallback() -> None:
    both = vc_settings({"VAGRANT_CLOUD_TOKEN": "vct-1", "ATLAS_TOKEN": "at-2"})
    assert both.token is not None and both.token.reveal() == "vct-1"
    assert both.box is not None and both.box.token_warning is None
    assert both.sources["token"] == "env VAGRANT_CLOUD_TOKEN"
    fallback = vc_settings({"ATLAS_TOKEN": "at-2"})
    assert fallback.token is not None and fallback.token.reveal() == "at-2"
    assert fallback.box is not None and fallback.box.token_warning == FALLBACK_WARNING
    with pytest.raises(ConfigError, match="neither VAGRANT_CLOUD_TOKEN nor ATLAS_TOKEN"):
        vc_settings({})
    assert vc_settings({}, no_token=True).token is None


def test_the_api_root_is_used_as_given_with_packers_default() -> None:
    default = vc_settings(atlas_url=None)
    assert default.box is not None
    assert (
        default.box.endpoint("box", "acme", "web") == "https://vagrantcloud.com/api/v1/box/acme/web"
    )
    assert default.sources["atlas_url"] == "default"
    prefixed = vc_settings(atlas_url="http://h:8080/registry/?x=1")
    assert prefixed.box is not None
    assert prefixed.box.endpoint("authenticate") == "http://h:8080/registry/authenticate"
    with pytest.raises(ConfigError, match="no scheme"):
        vc_settings(atlas_url="vagrantcloud.com/api/v1")


def test_box_settings_for_the_atlas_target_or_an_unknown_target_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="box version, private given for the atlas target"):
        Settings.from_inputs(
            Inputs(artifact="acme/web", box_version="1.0", private=True), {"ATLAS_TOKEN": "t"}
        )
    with pytest.raises(ConfigError, match="'vagrantcloud' is not a target"):
        vc_settings(to="vagrantcloud")
    atlas = Settings.from_inputs(Inputs(artifact="acme/web", to="atlas"), {"ATLAS_TOKEN": "t"})
    assert atlas.box is None


def test_the_flags_land_in_the_box_settings() -> None:
    s = vc_settings(
        version_description="first", no_release=True, no_direct_upload=True, private=True
    )
    assert s.box is not None
    assert (s.box.description, s.box.release, s.box.direct_upload, s.box.private) == (
        "first",
        False,
        False,
        True,
    )


# --- the client on the wire -----------------------------------------------------------


@responses.activate
def test_every_api_request_carries_bearer_and_a_json_content_type() -> None:
    responses.get(f"{API}/authenticate", json={"user": {"username": "a"}})
    responses.get(f"{API}/box/acme/web", status=404, json={"errors": ["Resource not found!"]})
    api = client()
    api.authenticate()
    assert api.get_box("acme", "web") is None
    for call in responses.calls:
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.request.headers["Content-Type"] == "application/json"
        assert "X-Atlas-Token" not in call.request.headers


@responses.activate
def test_a_401_is_an_auth_error_naming_the_vagrant_cloud_token() -> None:
    responses.get(f"{API}/authenticate", status=401, json={"errors": ["Invalid token"]})
    with pytest.raises(AuthError) as caught:
        client().authenticate()
    assert caught.value.exit_code == ExitStatus.AUTH
    assert "VAGRANT_CLOUD_TOKEN" in caught.value.hint


@responses.activate
def test_already_released_is_success_and_another_refusal_is_exit_5() -> None:
    url = f"{API}/box/acme/web/version/1.0.0/release"
    responses.put(url, status=422, json={"errors": ["This version has already been released"]})
    assert client().release("acme", "web", "1.0.0") is False
    responses.replace(responses.PUT, url, status=422, json={"errors": ["has no providers"]})
    with pytest.raises(RegistryRefused) as caught:
        client().release("acme", "web", "1.0.0")
    assert caught.value.exit_code == ExitStatus.REFUSED
    assert "has no providers" in caught.value.message
    responses.replace(responses.PUT, url, json={"version": "1.0.0", "status": "active"})
    assert client().release("acme", "web", "1.0.0") is True


@responses.activate
def test_a_version_post_whose_answer_is_lost_is_found_not_sent_again() -> None:
    responses.post(f"{API}/box/acme/web/versions", body=requests.ConnectionError("reset"))
    listed = {"tag": "acme/web", "versions": [{"version": "1.0.0", "status": "unreleased"}]}
    responses.get(f"{API}/box/acme/web", json=listed)
    found = client().create_version("acme", "web", "1.0.0")
    assert found["version"] == "1.0.0"
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 1
    assert json.loads(posts[0].request.body or b"") == {"version": {"version": "1.0.0"}}


@responses.activate
def test_a_503_on_a_read_is_retried() -> None:
    url = f"{API}/box/acme/web"
    responses.get(url, status=503)
    responses.get(url, json={"tag": "acme/web", "versions": []})
    assert client().get_box("acme", "web") == {"tag": "acme/web", "versions": []}
    assert len(responses.calls) == 2


@responses.activate
def test_upload_urls_are_checked_and_become_secrets() -> None:
    base = f"{API}/box/acme/web/version/1.0.0/provider/virtualbox/upload"
    store = "https://store.example/put/xyz?sig=vc-presigned-secret"
    callback = f"{API}/box/acme/web/version/1.0.0/provider/virtualbox/upload/callback-tok-9"
    responses.get(f"{base}/direct", json={"upload_path": store, "callback": callback})
    target = client().upload_target("acme", "web", "1.0.0", "virtualbox")
    assert (target.upload_path, target.callback) == (store, callback)
    assert "vc-presigned-secret" not in redact(f"PUT {store}")
    assert "callback-tok-9" not in redact(f"PUT {callback}")
    responses.get(base, json={"upload_path": "/relative"})
    with pytest.raises(RegistryRefused, match="no absolute http"):
        client(no_direct_upload=True).upload_target("acme", "web", "1.0.0", "virtualbox")


def test_the_token_goes_to_an_upload_path_only_on_the_apis_origin() -> None:
    api = client(no_direct_upload=True)
    assert api.bearer_for("https://vc.example/api/v1/upload/1")["Authorization"] == (
        f"Bearer {TOKEN}"
    )
    elsewhere = api.bearer_for("https://store.example/put/1")
    assert elsewhere == {"Content-Type": "application/json"}


def test_error_text_of_the_api_is_cut_for_secrets() -> None:
    assert errors_text(b'{"errors": ["bad ' + TOKEN.encode() + b'"]}') == "bad ***"


# --- the provider of a box ------------------------------------------------------------


def box_bytes(entries: dict[str, bytes], *, gz: bool = True) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue()) if gz else raw.getvalue()


def an_artifact(builder: str, id: str, files: list[Path]) -> Artifact:
    return Artifact(
        build="b",
        builder_type=builder,
        id=id,
        files=tuple(files),
        metadata=None,
        source="packer-manifest.json",
    )


@pytest.mark.parametrize("gz", [True, False])
def test_the_provider_is_read_from_metadata_json(tmp_path: Path, gz: bool) -> None:
    box = tmp_path / "x.box"
    entries = {"disk.img": b"\0" * 5000, "./metadata.json": b'{"provider": "libvirt"}'}
    box.write_bytes(box_bytes(entries, gz=gz))
    assert provider_from_box(box) == "libvirt"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (box_bytes({"disk.img": b"x"}), "holds no metadata.json"),
        (box_bytes({"metadata.json": b"{nope"}), "is not JSON"),
        (box_bytes({"metadata.json": b'{"format": "vagrant"}'}), "names no provider"),
        (box_bytes({"metadata.json": b" " * (MAX_METADATA + 1)}), "is not a small file"),
        (b"\x1f\x8b not really gzip", "cannot read the metadata.json"),
        (b"plain text", "cannot read the metadata.json"),
    ],
)
def test_a_box_without_a_readable_provider_is_an_input_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    box = tmp_path / "x.box"
    box.write_bytes(content)
    with pytest.raises(InputFileError, match=message) as caught:
        provider_from_box(box)
    assert caught.value.exit_code == ExitStatus.INPUT


@pytest.mark.parametrize(
    ("builder", "artifact_id", "expected"),
    [
        ("virtualbox-iso", "virtualbox", "virtualbox"),
        ("vmware-iso", "vmware", "vmware_desktop"),  # Packer's one rename
        ("qemu", "", "libvirt"),
        ("parallels-pvm", "", "parallels"),
        ("file", "out.box", "hyperv"),  # nothing in the build: the box's metadata.json
    ],
)
def test_the_provider_comes_from_the_build_as_packer_derives_it(
    tmp_path: Path, builder: str, artifact_id: str, expected: str
) -> None:
    box = tmp_path / "out.box"
    box.write_bytes(box_bytes({"metadata.json": b'{"provider": "hyperv"}'}))
    assert provider_of(an_artifact(builder, artifact_id, [box]), box)[0] == expected


def test_every_build_needs_a_box_and_a_provider_of_its_own(tmp_path: Path) -> None:
    one, two = tmp_path / "a.box", tmp_path / "b.box"
    for box in (one, two):
        box.write_bytes(box_bytes({"metadata.json": b'{"provider": "virtualbox"}'}))
    with pytest.raises(ConfigError, match="both provider 'virtualbox'"):
        plan_boxes([an_artifact("file", "", [one]), an_artifact("file", "", [two])], print)
    (tmp_path / "x.tar").write_bytes(b"x")
    with pytest.raises(InputFileError, match=r"has no \.box file"):
        plan_boxes([an_artifact("file", "", [tmp_path / "x.tar"])], print)


# --- the action -----------------------------------------------------------------------


def test_the_actions_inputs_map_onto_the_box_settings(tmp_path: Path) -> None:
    env = {
        "GITHUB_WORKSPACE": str(tmp_path),
        "INPUT_ARTIFACT": "acme/web",
        "INPUT_TOKEN": TOKEN,
        "INPUT_TO": "vagrant-cloud",
        "INPUT_VERSION": "2.1.0",
        "INPUT_VERSION_DESCRIPTION": "second",
        "INPUT_NO_RELEASE": "true",
        "INPUT_NO_DIRECT_UPLOAD": "false",
        "INPUT_PRIVATE": "True",
        "INPUT_ATLAS_URL": API,
    }
    s = action.settings_from_inputs(env)
    assert s.box is not None
    assert (s.box.version, s.box.description, s.box.release, s.box.direct_upload) == (
        "2.1.0",
        "second",
        False,
        True,
    )
    assert s.box.private is True and s.sources["token"] == "input"
    env.pop("INPUT_VERSION")
    with pytest.raises(ConfigError, match="the version input must be set"):
        action.settings_from_inputs(env)
    env["INPUT_PRIVATE"] = "yes"
    with pytest.raises(ConfigError, match="'private'"):
        action.settings_from_inputs(env)


def test_what_an_existing_provider_holds_is_read_from_its_checksum(tmp_path: Path) -> None:
    from atlas_ci.publish_box import _holds

    box = tmp_path / "x.box"
    box.write_bytes(b"the box")
    sha = hashlib.sha256(b"the box").hexdigest()
    md5 = hashlib.md5(b"the box").hexdigest()  # noqa: S324 - the kind a publisher may declare
    assert _holds({"checksum": None}, box, sha, "p") is False  # created, never uploaded
    assert _holds({"checksum": sha, "checksum_type": "sha256"}, box, sha, "p") is True
    assert _holds({"checksum": sha.upper(), "hosted": True}, box, sha, "p") is True
    assert _holds({"checksum": md5, "checksum_type": "md5"}, box, sha, "p") is True
    # Declared (vagrant cloud publish -c) but the file never arrived: send it.
    assert (
        _holds({"checksum": sha, "checksum_type": "sha256", "hosted": False}, box, sha, "p")
        is False
    )
    other = "ab" * 32
    with pytest.raises(RegistryRefused) as caught:
        _holds({"checksum": other, "checksum_type": "sha256"}, box, sha, "acme/web 1.0 vb")
    assert caught.value.exit_code == ExitStatus.REFUSED
    assert other in caught.value.message and sha in caught.value.message
    assert "never overwritten" in caught.value.hint


@pytest.mark.parametrize(
    "flags",
    [{"artifact_type": "vagrant.box"}, {"metadata_pairs": ["provider=libvirt"]}],
)
def test_atlas_only_settings_are_refused_for_this_target(flags: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="given for the vagrant-cloud target"):
        vc_settings(**flags)
