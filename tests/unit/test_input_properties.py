"""Properties of what the input parsers *accept* (test_plan/test_manifest fuzz that they raise
only tool errors): accepted metadata is one-line text within the limits, and accepted
artifact files are regular files inside the workspace when one is set."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_ci.errors import AtlasCIError
from atlas_ci.manifest import load_manifest
from atlas_ci.metadata import (
    MAX_ENTRIES,
    MAX_KEY_CHARS,
    MAX_VALUE_CHARS,
    parse_metadata_pairs,
    parse_metadata_text,
)

_awkward = st.sampled_from(["\n", "\r", "\x00", "=", ":", "#", " ", "'", '"', "\u2028", "é"])
_texty = st.lists(st.one_of(st.text(max_size=6), _awkward), max_size=6).map("".join)


def _assert_clean(metadata: dict[str, str]) -> None:
    assert len(metadata) <= MAX_ENTRIES
    for key, value in metadata.items():
        assert isinstance(key, str) and isinstance(value, str)
        assert key and len(key) <= MAX_KEY_CHARS and len(value) <= MAX_VALUE_CHARS
        for text in (key, value):
            assert "\n" not in text and "\r" not in text and "\x00" not in text


@settings(max_examples=150, deadline=None)
@given(st.lists(_texty, max_size=8))
def test_accepted_metadata_pairs_are_one_line_text(pairs: list[str]) -> None:
    with contextlib.suppress(AtlasCIError):
        _assert_clean(parse_metadata_pairs(pairs))


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.dictionaries(_texty, st.one_of(_texty, st.integers(), st.booleans()), max_size=6).map(
            json.dumps
        ),
        st.lists(st.tuples(_texty, _texty), max_size=6).map(
            lambda kv: "\n".join(f"{k}: {v}" for k, v in kv)
        ),
    )
)
def test_accepted_metadata_files_are_one_line_text(text: str) -> None:
    with contextlib.suppress(AtlasCIError):
        _assert_clean(parse_metadata_text(text, "fuzz"))


# A workspace holding a box, a subdirectory and links in and out; names built from pieces
# that climb out, point at devices, loop, or dangle.
_dirs = st.sampled_from(
    ["sub", "sub", "..", ".", "out-link", "in-link", "{root}/work", "{root}/outside", "/etc"]
)
_leaf = st.sampled_from(["ok.box"] * 6 + ["loop", "dangling", "/dev/null", "sub"])
_names = st.tuples(st.lists(_dirs, max_size=3), _leaf).map(
    lambda parts: "/".join([*parts[0], parts[1]]).replace("//", "/")
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(_names, min_size=1, max_size=2))
def test_accepted_files_are_regular_and_inside_the_workspace(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as top:
        root = Path(top)
        work, outside = root / "work", root / "outside"
        (work / "sub").mkdir(parents=True)
        outside.mkdir()
        (work / "ok.box").write_bytes(b"box")
        (work / "sub" / "ok.box").write_bytes(b"box")
        (outside / "ok.box").write_bytes(b"far")
        os.symlink(outside, work / "out-link")
        os.symlink(work / "sub", work / "in-link")
        os.symlink("loop", work / "loop")
        os.symlink(root / "missing", work / "dangling")
        build = {
            "name": "b",
            "builder_type": "null",
            "artifact_id": "x",
            "packer_run_uuid": "r",
            "files": [{"name": n.replace("{root}", str(root)), "size": 0} for n in names],
        }
        (work / "m.json").write_text(json.dumps({"builds": [build], "last_run_uuid": "r"}))
        try:
            artifacts = load_manifest(
                str(work / "m.json"), cwd=work, workspace=work, allow_outside_workspace=False
            )
        except AtlasCIError:
            return
        real_work = os.path.realpath(work)
        for artifact in artifacts:
            for path in artifact.files:
                assert path.is_file()
                assert Path(os.path.realpath(path)).is_relative_to(real_work), path
