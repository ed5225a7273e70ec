"""Properties of what the input parsers *accept* (test_plan/test_manifest fuzz that they raise
only tool errors): accepted metadata is one-line text within the limits that keeps the text
written, and accepted artifact files are regular files inside the workspace when one is set.

The generators make mostly well-formed input, with a minority of hostile pieces, and each
test counts its examples: a property checked on two inputs out of 150 checks nothing, so each
asserts that at least half of its examples reached the assertions
(``pytest tests/unit/test_input_properties.py -s`` prints the shares).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
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

T = TypeVar("T")
pytestmark = pytest.mark.slow  # fuzzing

MIN_SHARE = 0.5  # of the examples that must reach the property's assertions

# Clean text, and text with a hostile piece (newline, NUL, '=', ':', quotes, U+2028).
_awkward = st.sampled_from(["\n", "\r", "\x00", "=", ":", "#", " ", "'", '"', "\u2028", "é"])
# Printable text (no control characters: YAML refuses them, and the hostile pieces add them).
_plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn")), max_size=12)
_hostile = st.lists(st.one_of(_plain, _awkward), min_size=1, max_size=4).map("".join)
_key = _plain.filter(lambda key: key.strip() != "")


# One example in four is spoiled (sampled_from, not one_of: Hypothesis does not pick the
# branches of one_of evenly).
_spoil = st.sampled_from([False, False, False, True])


def _mostly_clean(
    clean: st.SearchStrategy[dict[str, T]], hostile: st.SearchStrategy[T]
) -> st.SearchStrategy[dict[str, T]]:
    """Three examples in four as ``clean`` makes them; the fourth with one hostile entry."""
    return st.tuples(clean, _spoil, _hostile, hostile).map(
        lambda c: {**c[0], c[2]: c[3]} if c[1] else c[0]
    )


# Scalars YAML reads as plain text: the tool must keep exactly what was written.
_word = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,11}", fullmatch=True).filter(
    lambda word: word.lower() not in ("null", "~")
)


def _reached(counts: Counter[str], test: str, *, refusals: bool = True) -> None:
    share = counts["accepted"] / max(counts["examples"], 1)
    print(f"\n{test}: {counts['accepted']} of {counts['examples']} examples reached the asserts")
    assert counts["examples"] >= 50
    if refusals:  # the hostile quarter was generated and refused
        assert counts["accepted"] < counts["examples"]
    assert share >= MIN_SHARE, f"only {share:.0%} of the examples reached the assertions"


def _assert_clean(metadata: dict[str, str]) -> None:
    assert len(metadata) <= MAX_ENTRIES
    for key, value in metadata.items():
        assert isinstance(key, str) and isinstance(value, str)
        assert key and len(key) <= MAX_KEY_CHARS and len(value) <= MAX_VALUE_CHARS
        for text in (key, value):
            assert "\n" not in text and "\r" not in text and "\x00" not in text


def test_accepted_metadata_pairs_are_one_line_text_as_written() -> None:
    counts: Counter[str] = Counter()

    clean = st.dictionaries(_key.filter(lambda k: "=" not in k), _plain, max_size=8)
    spoiled = _mostly_clean(clean, _hostile)

    @settings(max_examples=150, deadline=None)
    @given(spoiled)
    def prop(entries: dict[str, str]) -> None:
        counts["examples"] += 1
        pairs = [f"{key}={value}" for key, value in entries.items()]
        try:
            metadata = parse_metadata_pairs(pairs)
        except AtlasCIError as exc:
            event(f"refused: {type(exc).__name__}")
            return
        counts["accepted"] += 1
        _assert_clean(metadata)
        # split at the first '=', nothing else changed
        assert metadata == dict(pair.split("=", 1) for pair in pairs)

    prop()
    _reached(counts, "metadata pairs")


def test_accepted_metadata_files_are_one_line_text() -> None:
    counts: Counter[str] = Counter()

    scalars = st.one_of(_plain, st.integers(), st.booleans())
    entries = _mostly_clean(st.dictionaries(_key, scalars, max_size=6), _hostile)

    @settings(max_examples=150, deadline=None)
    @given(entries, st.sampled_from(["json", "yaml"]))
    def prop(entries: dict[str, object], form: str) -> None:
        counts["examples"] += 1
        if form == "json":
            text = json.dumps(entries)
        else:  # JSON strings are YAML double-quoted scalars
            quote = functools.partial(json.dumps, ensure_ascii=False)
            text = "\n".join(f"{quote(k)}: {quote(v)}" for k, v in entries.items())
        try:
            metadata = parse_metadata_text(text, "fuzz")
        except AtlasCIError as exc:
            event(f"refused: {type(exc).__name__}")
            return
        counts["accepted"] += 1
        _assert_clean(metadata)
        assert set(metadata) == set(entries)

    prop()
    _reached(counts, "metadata files")


def test_plain_yaml_scalars_keep_the_text_written() -> None:
    counts: Counter[str] = Counter()

    @settings(max_examples=100, deadline=None)
    @given(st.dictionaries(_word, _word, min_size=1, max_size=6))
    def prop(entries: dict[str, str]) -> None:
        counts["examples"] += 1
        text = "\n".join(f"{key}: {value}" for key, value in entries.items())
        metadata = parse_metadata_text(text, "fuzz")  # every such line is valid metadata
        counts["accepted"] += 1
        assert metadata == entries

    prop()
    _reached(counts, "plain YAML scalars", refusals=False)


# A workspace holding a box, a subdirectory and links in and out. Three lists of names in four
# resolve inside it (through ".", "..", an absolute path, a link to a subdirectory); the fourth
# adds one that leaves it (a regular file outside, through "..", a link or an absolute path),
# points at a device, a directory, a loop or nothing.
_inside = st.sampled_from(
    [
        "ok.box",
        "./ok.box",
        "sub/ok.box",
        "sub/../ok.box",
        "sub/./ok.box",
        "in-link/ok.box",
        "in-link/../ok.box",
        "{root}/work/ok.box",
        "{root}/work/in-link/ok.box",
    ]
)
_elsewhere = st.sampled_from(
    [
        "../outside/ok.box",
        "out-link/ok.box",
        "sub/../../outside/ok.box",
        "{root}/outside/ok.box",
        "/etc/hostname",
        "loop",
        "dangling",
        "/dev/null",
        "sub",
    ]
)
_clean_names = st.lists(_inside, min_size=1, max_size=2)
_names = st.tuples(_clean_names, _spoil, _elsewhere).map(lambda c: [*c[0], c[2]] if c[1] else c[0])


def _workspace(root: Path) -> Path:
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
    return work


def test_accepted_files_are_regular_and_inside_the_workspace() -> None:
    counts: Counter[str] = Counter()

    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(_names)
    def prop(names: list[str]) -> None:
        counts["examples"] += 1
        with tempfile.TemporaryDirectory() as top:
            root = Path(top)
            work = _workspace(root)
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
            except AtlasCIError as exc:
                event(f"refused: {type(exc).__name__}")
                return
            counts["accepted"] += 1
            real_work = os.path.realpath(work)
            for artifact in artifacts:
                for path in artifact.files:
                    assert path.is_file()
                    assert Path(os.path.realpath(path)).is_relative_to(real_work), path

    prop()
    _reached(counts, "artifact files")
