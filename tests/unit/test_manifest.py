"""Loading Packer manifests and artifact JSON files."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_ci.errors import AtlasCIError, ExitStatus, InputFileError
from atlas_ci.manifest import load_artifact_json, load_manifest
from tests.ids import short_id

RUN = "6f1c0000-0000-0000-0000-000000000002"
OLD_RUN = "6f1c0000-0000-0000-0000-000000000001"


def build(
    name: str,
    files: list[str] | None = None,
    *,
    run: str | None = RUN,
    builder_type: str = "virtualbox-iso",
    artifact_id: str = "VM",
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "builder_type": builder_type,
        "build_time": 1700000000,
        "files": None if files is None else [{"name": f, "size": 1} for f in files],
        "artifact_id": artifact_id,
    }
    if run is not None:
        entry["packer_run_uuid"] = run
    return entry


def write_manifest(
    directory: Path, builds: list[dict[str, Any]], last_run: str | None = RUN
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"builds": builds}
    if last_run is not None:
        data["last_run_uuid"] = last_run
    path = directory / "packer-manifest.json"
    path.write_text(json.dumps(data))
    return path


def touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def input_error(excinfo: pytest.ExceptionInfo[InputFileError]) -> str:
    line = excinfo.value.one_line()
    assert "\n" not in line
    assert excinfo.value.exit_code == ExitStatus.INPUT
    return line


# --- build selection ----------------------------------------------------------------------


def test_manifest_picks_builds_of_last_run(tmp_path: Path) -> None:
    path = write_manifest(
        tmp_path,
        [
            build("web", run=OLD_RUN, artifact_id="old"),
            build("web", artifact_id="new"),
            build("db", artifact_id="db-new"),
        ],
    )
    artifacts = load_manifest(str(path), cwd=tmp_path)
    assert [(a.build, a.id) for a in artifacts] == [("web", "new"), ("db", "db-new")]
    assert all(a.source == str(path) and a.metadata is None for a in artifacts)


def test_manifest_without_last_run_uuid_takes_all_builds(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, [build("a", run=OLD_RUN), build("b")], last_run=None)
    assert [a.build for a in load_manifest(str(path), cwd=tmp_path)] == ["a", "b"]
    path = write_manifest(tmp_path, [build("a", run=OLD_RUN), build("b")], last_run="")
    assert [a.build for a in load_manifest(str(path), cwd=tmp_path)] == ["a", "b"]


def test_manifest_whose_builds_lack_uuids_takes_all_builds(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, [build("a", run=None), build("b", run=None)])
    assert [a.build for a in load_manifest(str(path), cwd=tmp_path)] == ["a", "b"]


def test_manifest_with_no_build_of_last_run_is_an_error(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, [build("a", run=OLD_RUN)])
    with pytest.raises(InputFileError) as exc:
        load_manifest(str(path), cwd=tmp_path)
    assert "has no build of its last run" in input_error(exc)


def test_build_filter_keeps_only_named_builds(tmp_path: Path) -> None:
    path = write_manifest(
        tmp_path, [build("web"), build("db", builder_type="amazon-ebs"), build("cache")]
    )
    assert [a.build for a in load_manifest(str(path), ["cache", "web"], cwd=tmp_path)] == [
        "web",
        "cache",
    ]
    assert [a.build for a in load_manifest(str(path), ["amazon-ebs.db"], cwd=tmp_path)] == ["db"]
    assert [a.build for a in load_manifest(str(path), "db", cwd=tmp_path)] == ["db"]


def test_unknown_build_lists_the_names_of_the_last_run(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, [build("gone", run=OLD_RUN), build("web"), build("db")])
    with pytest.raises(InputFileError) as exc:
        load_manifest("packer-manifest.json", ["web", "gone"], cwd=tmp_path)
    line = input_error(exc)
    assert line.startswith(
        "build 'gone' not in the last run of manifest 'packer-manifest.json'; "
        "builds in that run: 'web', 'db'"
    )
    assert exc.value.path == "packer-manifest.json"
    assert path.exists()


# --- file resolution ----------------------------------------------------------------------


def test_relative_file_is_found_in_the_manifest_directory_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    in_manifest_dir = touch(out / "output-vbox" / "disk.vmdk")
    touch(tmp_path / "output-vbox" / "disk.vmdk")
    write_manifest(out, [build("vm", ["output-vbox/disk.vmdk"])])
    (artifact,) = load_manifest("out/packer-manifest.json", cwd=tmp_path)
    assert artifact.files == (in_manifest_dir,)
    assert artifact.files[0].is_absolute()


def test_relative_file_falls_back_to_the_working_directory(tmp_path: Path) -> None:
    in_cwd = touch(tmp_path / "output-vbox" / "disk.vmdk")
    write_manifest(tmp_path / "out", [build("vm", ["output-vbox/disk.vmdk"])])
    (artifact,) = load_manifest("out/packer-manifest.json", cwd=tmp_path)
    assert artifact.files == (in_cwd,)


def test_missing_file_error_names_both_places(tmp_path: Path) -> None:
    write_manifest(tmp_path / "out", [build("vm", ["output-vbox/disk.vmdk"])])
    with pytest.raises(InputFileError) as exc:
        load_manifest("out/packer-manifest.json", cwd=tmp_path)
    line = input_error(exc)
    assert "file 'output-vbox/disk.vmdk' of build 'vm'" in line
    assert f"{tmp_path}/out/output-vbox/disk.vmdk or {tmp_path}/output-vbox/disk.vmdk" in line
    assert exc.value.path == "output-vbox/disk.vmdk"


def test_missing_file_next_to_manifest_in_cwd_names_one_place(tmp_path: Path) -> None:
    write_manifest(tmp_path, [build("vm", ["disk.vmdk"])])
    with pytest.raises(InputFileError) as exc:
        load_manifest("packer-manifest.json", cwd=tmp_path)
    assert f"not found: no {tmp_path}/disk.vmdk;" in input_error(exc)


def test_strip_path_base_names_resolve_next_to_the_manifest(tmp_path: Path) -> None:
    box = touch(tmp_path / "ci" / "package.box")
    write_manifest(tmp_path / "ci", [build("vm", ["package.box"], artifact_id="virtualbox")])
    (artifact,) = load_manifest(str(tmp_path / "ci" / "packer-manifest.json"), cwd=tmp_path)
    assert artifact.files == (box,)


def test_absolute_file_name_is_used_as_is(tmp_path: Path) -> None:
    disk = touch(tmp_path / "elsewhere" / "disk.img")
    write_manifest(tmp_path / "m", [build("vm", [str(disk)])])
    (artifact,) = load_manifest(str(tmp_path / "m" / "packer-manifest.json"))
    assert artifact.files == (disk,)


def test_file_listed_twice_is_kept_once(tmp_path: Path) -> None:
    disk = touch(tmp_path / "disk.img")
    write_manifest(tmp_path, [build("vm", ["disk.img", str(disk), "./disk.img"])])
    (artifact,) = load_manifest("packer-manifest.json", cwd=tmp_path)
    assert artifact.files == (disk,)


def test_dotdot_in_file_name_is_resolved(tmp_path: Path) -> None:
    disk = touch(tmp_path / "disk.img")
    (tmp_path / "sub").mkdir()
    write_manifest(tmp_path / "sub", [build("vm", ["../disk.img"])])
    (artifact,) = load_manifest("sub/packer-manifest.json", cwd=tmp_path)
    assert artifact.files == (disk,)


def test_symlink_to_regular_file_is_accepted_under_its_own_name(tmp_path: Path) -> None:
    target = touch(tmp_path / "store" / "blob")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "disk.vmdk").symlink_to(target)
    write_manifest(tmp_path, [build("vm", ["out/disk.vmdk"])])
    (artifact,) = load_manifest("packer-manifest.json", cwd=tmp_path)
    assert artifact.files == (tmp_path / "out" / "disk.vmdk",)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: os.mkfifo(p), "is a FIFO (named pipe)"),
        (lambda p: p.symlink_to("/dev/null"), "is a device"),
        (lambda p: p.symlink_to(p.parent / "nowhere"), "is a dangling symlink"),
        (lambda p: p.symlink_to(p), "is a symlink loop"),
    ],
    ids=["directory", "fifo", "device", "dangling", "loop"],
)
def test_non_regular_files_are_refused(tmp_path: Path, make: Any, message: str) -> None:
    make(tmp_path / "thing")
    write_manifest(tmp_path, [build("vm", ["thing"])])
    with pytest.raises(InputFileError) as exc:
        load_manifest("packer-manifest.json", cwd=tmp_path)
    line = input_error(exc)
    assert line.startswith(
        f"file 'thing' of build 'vm' in manifest 'packer-manifest.json' {message}"
    )


def test_all_or_nothing_when_one_selected_build_is_broken(tmp_path: Path) -> None:
    touch(tmp_path / "a.img")
    write_manifest(tmp_path, [build("a", ["a.img"]), build("b", ["b.img"])])
    with pytest.raises(InputFileError, match=r"file 'b.img' of build 'b'"):
        load_manifest("packer-manifest.json", cwd=tmp_path)
    assert [a.build for a in load_manifest("packer-manifest.json", ["a"], cwd=tmp_path)] == ["a"]


def test_build_without_files_has_no_files(tmp_path: Path) -> None:
    write_manifest(tmp_path, [build("ami", None, builder_type="amazon-ebs", artifact_id="r:a")])
    (artifact,) = load_manifest("packer-manifest.json", cwd=tmp_path)
    assert artifact.files == ()
    assert (artifact.builder_type, artifact.id) == ("amazon-ebs", "r:a")


# --- workspace ----------------------------------------------------------------------------


def test_file_outside_workspace_is_refused_unless_allowed(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    outside = touch(tmp_path / "outside" / "disk.img")
    write_manifest(workspace, [build("vm", [str(outside)])])
    manifest = str(workspace / "packer-manifest.json")
    with pytest.raises(InputFileError) as exc:
        load_manifest(manifest, workspace=workspace, allow_outside_workspace=False)
    line = input_error(exc)
    assert f"resolves to {outside}, outside the workspace {workspace}" in line
    assert "--allow-outside-workspace" in exc.value.hint
    assert load_manifest(manifest, workspace=workspace)[0].files == (outside,)


def test_symlink_inside_workspace_pointing_outside_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    outside = touch(tmp_path / "secret")
    workspace.mkdir()
    (workspace / "disk.img").symlink_to(outside)
    write_manifest(workspace, [build("vm", ["disk.img"])])
    with pytest.raises(InputFileError, match=r"outside the workspace"):
        load_manifest(
            "packer-manifest.json",
            cwd=workspace,
            workspace=workspace,
            allow_outside_workspace=False,
        )


def test_file_inside_workspace_is_accepted(tmp_path: Path) -> None:
    disk = touch(tmp_path / "ws" / "out" / "disk.img")
    write_manifest(tmp_path / "ws", [build("vm", ["out/disk.img"])])
    artifacts = load_manifest(
        "ws/packer-manifest.json",
        cwd=tmp_path,
        workspace=tmp_path / "ws",
        allow_outside_workspace=False,
    )
    assert artifacts[0].files == (disk,)


# --- hostile manifests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not valid JSON: Expecting value at line 1, column 1"),
        (b'{"builds": [', "is not valid JSON"),
        (b"\xff\xfe{}", "is not UTF-8 text (bad byte at offset 0)"),
        (b"[]", 'is not a Packer manifest (no "builds" list)'),
        (b"{}", 'is not a Packer manifest (no "builds" list)'),
        (b'{"builds": {}}', '"builds" is a mapping, not a list'),
        (b'{"builds": []}', "lists no builds"),
        (b'{"builds": [], "last_run_uuid": 5}', '"last_run_uuid" is a number, not a string'),
        (b'{"builds": [5]}', "build #1 in manifest 'm.json' is a number, not an object"),
        (b'{"builds": [{}]}', "build #1 in manifest 'm.json': \"name\" is missing, not a string"),
        (b'{"builds": [{"name": 5}]}', '"name" is a number, not a string'),
        (b'{"builds": [{"name": "a", "files": "x"}]}', "build 'a' in manifest 'm.json': \"files\""),
        (b'{"builds": [{"name": "a", "files": ["x"]}]}', "file #1 is not an object with a string"),
        (b'{"builds": [{"name": "a", "files": [{"size": 1}]}]}', "file #1 is not an object"),
        (b'{"builds": [{"name": "a", "builder_type": []}]}', '"builder_type" is a list'),
        (b'{"builds": [{"name": "a", "files": [{"name": ""}]}]}', "an empty file name"),
        (b'{"builds": [{"name": "a", "files": [{"name": "a\\u0000b"}]}]}', "contains a NUL"),
        (b"[" * 100000, "nested too deeply"),
        (b'{"builds": [], "x": 1' + b"1" * 5000 + b"}", "is not usable JSON"),
    ],
    ids=short_id,
)
def test_hostile_manifest_is_an_input_error(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "m.json").write_bytes(content)
    with pytest.raises(InputFileError) as exc:
        load_manifest("m.json", cwd=tmp_path)
    line = input_error(exc)
    assert "manifest 'm.json'" in line or "file name" in line
    assert message in line


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"builds": [build("a")]}).encode()
    )
    assert [a.build for a in load_manifest("m.json", cwd=tmp_path)] == ["a"]


def test_missing_manifest_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as exc:
        load_manifest("nope.json", cwd=tmp_path)
    assert input_error(exc).startswith(f"manifest 'nope.json' not found (looked in {tmp_path})")
    assert exc.value.path == "nope.json"


def test_manifest_that_is_a_directory_or_fifo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(InputFileError, match=r"manifest 'dir.json' is a directory"):
        load_manifest("dir.json", cwd=tmp_path)
    with pytest.raises(InputFileError, match=r"manifest 'fifo.json' is a FIFO"):
        load_manifest("fifo.json", cwd=tmp_path)


def test_empty_manifest_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"manifest path is empty"):
        load_manifest("", cwd=tmp_path)


def test_manifest_over_64_mib_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:  # sparse: no disk used
        handle.truncate(64 * 1024 * 1024 + 1)
    with pytest.raises(InputFileError) as exc:
        load_manifest(str(path))
    assert "is 67108865 bytes, more than the 64 MiB allowed" in input_error(exc)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=25,
)
_manifestish = st.fixed_dictionaries(
    {
        "builds": st.lists(
            st.dictionaries(
                st.sampled_from(
                    ["name", "files", "packer_run_uuid", "builder_type", "artifact_id"]
                ),
                _json,
            )
        )
    },
    optional={"last_run_uuid": _json},
)


@pytest.mark.slow  # fuzzing
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text().map(str.encode),
        st.binary(),
        _json.map(json.dumps).map(str.encode),
        _manifestish.map(json.dumps).map(str.encode),
    )
)
def test_load_manifest_raises_only_tool_errors(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.json"
        path.write_bytes(content)
        with contextlib.suppress(AtlasCIError):
            load_manifest(str(path), cwd=Path(directory))


# --- artifact JSON ------------------------------------------------------------------------


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_artifact_json_gives_one_artifact(tmp_path: Path) -> None:
    box = touch(tmp_path / "a" / "package.box")
    write_json(
        tmp_path / "a" / "artifact.json",
        {
            "id": "virtualbox",
            "files": ["package.box"],
            "builder_type": "virtualbox-iso",
            "metadata": {"provider": "virtualbox"},
            "string": "ignored",
        },
    )
    (artifact,) = load_artifact_json("a/artifact.json", cwd=tmp_path)
    assert artifact.build == ""
    assert artifact.id == "virtualbox"
    assert artifact.builder_type == "virtualbox-iso"
    assert artifact.files == (box,)
    assert artifact.metadata == {"provider": "virtualbox"}
    assert artifact.source == "a/artifact.json"


def test_artifact_json_minimal(tmp_path: Path) -> None:
    write_json(tmp_path / "artifact.json", {})
    (artifact,) = load_artifact_json("artifact.json", cwd=tmp_path)
    assert (artifact.id, artifact.builder_type, artifact.files, artifact.metadata) == (
        "",
        "",
        (),
        None,
    )


def test_artifact_json_files_fall_back_to_cwd(tmp_path: Path) -> None:
    disk = touch(tmp_path / "disk.img")
    write_json(tmp_path / "j" / "artifact.json", {"files": ["disk.img"]})
    assert load_artifact_json("j/artifact.json", cwd=tmp_path)[0].files == (disk,)
    write_json(tmp_path / "j" / "artifact.json", {"files": ["other.img"]})
    with pytest.raises(InputFileError) as exc:
        load_artifact_json("j/artifact.json", cwd=tmp_path)
    assert f"no {tmp_path}/j/other.img or {tmp_path}/other.img" in input_error(exc)


def test_artifact_json_metadata_keeps_number_text(tmp_path: Path) -> None:
    write_json(
        tmp_path / "artifact.json",
        '{"metadata": {"version": 1.10, "count": 5, "ok": true, "name": "x"}}',
    )
    (artifact,) = load_artifact_json("artifact.json", cwd=tmp_path)
    assert artifact.metadata == {"version": "1.10", "count": "5", "ok": "true", "name": "x"}
    assert all(type(v) is str for v in artifact.metadata.values())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[]", "artifact JSON 'artifact.json' is a list, not a JSON object"),
        ('{"id": 5}', '"id" is a number, not a string'),
        ('{"builder_type": false}', '"builder_type" is a boolean, not a string'),
        ('{"files": "a"}', '"files" must be a list of path strings'),
        ('{"files": [1]}', '"files" must be a list of path strings'),
        ('{"metadata": [1]}', "metadata in artifact JSON 'artifact.json' is a list"),
        ('{"metadata": {"a": null}}', "metadata 'a' in artifact JSON 'artifact.json' has no value"),
        ('{"metadata": {"a": {"b": "c"}}}', "is a mapping; metadata values must be scalars"),
        ('{"id": "x"', "is not valid JSON"),
    ],
)
def test_hostile_artifact_json_is_an_input_error(tmp_path: Path, data: str, message: str) -> None:
    write_json(tmp_path / "artifact.json", data)
    with pytest.raises(InputFileError) as exc:
        load_artifact_json("artifact.json", cwd=tmp_path)
    assert message in input_error(exc)
    assert exc.value.path == "artifact.json"


def test_artifact_json_workspace_check(tmp_path: Path) -> None:
    outside = touch(tmp_path / "outside.img")
    write_json(tmp_path / "ws" / "artifact.json", {"files": [str(outside)]})
    with pytest.raises(InputFileError, match=r"outside the workspace"):
        load_artifact_json(
            "artifact.json",
            cwd=tmp_path / "ws",
            workspace=tmp_path / "ws",
            allow_outside_workspace=False,
        )
