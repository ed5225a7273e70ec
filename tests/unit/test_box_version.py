"""Box version strings: which Vagrant accepts, and the order it puts them in (RubyGems')."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess

import pytest

from atlas_ci.registry import box_version
from atlas_ci.registry.box_version import BadVersion

RUBY = shutil.which("ruby")


@pytest.mark.parametrize(
    "version",
    ["1", "1.2.0", "2026.12.07", "1.0.0.rc1", "1.0.0-rc1", "1.0.b.2", "0", "1.a", "10-x-y.z"],
)
def test_versions_vagrant_accepts_are_valid(version: str) -> None:
    box_version.check(version)


@pytest.mark.parametrize(
    "version",
    ["", "v1.0", "1..0", "1.0.", ".1", "1.0-", "1_0", "1.0 ", " 1.0", "1.0+build", "latest", "१"],
)
def test_anything_else_is_invalid_with_a_hint(version: str) -> None:
    with pytest.raises(BadVersion, match=r"1\.2\.0|empty"):
        box_version.check(version)


def test_an_overlong_version_is_invalid() -> None:
    box_version.check("1." * 63 + "1")
    with pytest.raises(BadVersion, match="longer than 128"):
        box_version.check("1." * 64 + "1")


def test_a_control_character_is_not_echoed_raw() -> None:
    with pytest.raises(BadVersion) as caught:
        box_version.check("1.0\n\x1b[2J")
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


# Oldest to newest, as RubyGems sorts them (checked with Ruby 3.1's Gem::Version).
ORDERED = [
    "0.9",
    "1.a.0",
    "1.0.a.2",
    "1.0.a10",
    "1.0.b1",
    "1.0.b.2",
    "1.0.b10",
    "1.0.0-rc1",
    "1.0-1",
    "1.0.0.rc1",
    "1.0",
    "1.0.1",
    "1.9.0",
    "1.10.0",
    "2",
    "2026.12.07",
]


def test_order_is_vagrants_not_the_strings() -> None:
    shuffled = ORDERED[:]
    random.Random(1).shuffle(shuffled)
    assert box_version.newest_first(shuffled) == ORDERED[::-1]
    assert box_version.compare("1.10.0", "1.9.0") == 1
    assert box_version.compare("1.0.0.rc1", "1.0.0") == -1


def test_sort_key_orders_bytes_as_compare_orders_versions() -> None:
    keys = [box_version.sort_key(v) for v in ORDERED]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    ("a", "b"), [("1.0", "1.0.0"), ("1", "1.0.0.0"), ("2026.12.07", "2026.12.7")]
)
def test_versions_vagrant_takes_for_one_are_equal_with_one_key(a: str, b: str) -> None:
    assert box_version.compare(a, b) == 0
    assert box_version.sort_key(a) == box_version.sort_key(b)


def test_zeros_before_a_word_or_a_number_order_as_rubygems_does() -> None:
    # Past its end a version counts as zeros: zeros then a number is newer, then a word older;
    # zeros between the numbers and the first word are dropped. (Answers of Gem::Version.)
    cases = [
        ("1.0.0.1", "1", 1),
        ("1.a.0.0.1", "1.a", 1),
        ("1.a.0.0.b", "1.a", -1),
        ("1.a.0.b", "1.a.0.0.b", -1),
        ("1.a", "1.0.0.a", 0),
    ]
    for a, b, expected in cases:
        assert box_version.compare(a, b) == expected, (a, b)
        key_a, key_b = box_version.sort_key(a), box_version.sort_key(b)
        assert (key_a > key_b) - (key_a < key_b) == expected, (a, b)


def _generated(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces = ["0", "1", "2", "9", "10", "00", "a", "b", "rc", "pre", "Z", "rc1", "b10", "0a"]
    found: set[str] = set()
    while len(found) < count:
        version = str(rng.choice([0, 1, 2, 10]))
        for _ in range(rng.randint(0, 4)):
            version += "." + rng.choice(pieces)
        if rng.random() < 0.2:
            version += "-" + rng.choice(["rc1", "1", "a.b", "x-y"])
        found.add(version)
    return sorted(found)


def test_order_and_validity_agree_with_rubygems_itself() -> None:
    """Every pair of 150 generated versions compared by Ruby's Gem::Version and here."""
    if RUBY is None:
        if os.environ.get("CI"):
            pytest.fail("ruby is not installed; CI installs it with vagrant")
        pytest.skip("ruby is not installed (it comes with vagrant)")
    versions = _generated(150, seed=7)
    script = (
        "require 'json'; vs = JSON.parse(STDIN.read); "
        "puts JSON.dump(vs.map { |a| vs.map { |b| Gem::Version.new(a) <=> Gem::Version.new(b) } })"
    )
    answer = subprocess.run(
        [RUBY, "-e", script], input=json.dumps(versions), capture_output=True, text=True, check=True
    )
    expected = json.loads(answer.stdout)
    for i, a in enumerate(versions):
        for j, b in enumerate(versions):
            key_order = (box_version.sort_key(a) > box_version.sort_key(b)) - (
                box_version.sort_key(a) < box_version.sort_key(b)
            )
            assert (box_version.compare(a, b), key_order) == (expected[i][j],) * 2, (a, b)
