"""One version number: atlas_ci.__version__, which the package metadata reads."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import atlas_ci

ROOT = Path(__file__).resolve().parents[2]


def test_the_metadata_version_is_the_package_version() -> None:
    assert importlib.metadata.version("atlas-ci") == atlas_ci.__version__
    assert f"atlas-ci/{atlas_ci.__version__}" == atlas_ci.USER_AGENT


def _table(text: str, name: str) -> list[str]:
    """The lines of one ``[name]`` table of a TOML file (tomllib is Python 3.11+)."""
    lines = text.splitlines()
    start = lines.index(f"[{name}]") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    return [line.split("#", 1)[0].strip() for line in lines[start:end]]


def test_pyproject_writes_no_version_of_its_own() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = _table(text, "project")
    assert not [line for line in project if line.startswith("version")]
    assert 'dynamic = ["version"]' in project
    assert 'version = { attr = "atlas_ci.__version__" }' in _table(text, "tool.setuptools.dynamic")


def test_the_changelog_has_a_section_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {atlas_ci.__version__}" in changelog
