from __future__ import annotations

import re
from pathlib import Path

import pytest

from atlas_ci.reporters import dotenv_values, format_dotenv, write_dotenv
from atlas_ci.result import BuildResult, FileInfo, Result

SHA = "0f" * 32


def result(version: int | None = 4, *, dry_run: bool = False, file: bool = True) -> Result:
    builds = (
        BuildResult(
            build="old",
            artifact="acme/web",
            artifact_type="amazon.ami",
            version=None if version is None else version - 1,
            file=None,
            seconds=0.1,
            metadata=None,
        ),
        BuildResult(
            build="web",
            artifact="acme/web",
            artifact_type="vagrant.box",
            version=version,
            file=FileInfo(size=10, sha256=SHA) if file else None,
            seconds=0.1,
            metadata={"provider": "virtualbox"},
        ),
    )
    return Result(builds=builds, dry_run=dry_run)


def test_dotenv_report_names_and_values_of_the_last_build(tmp_path: Path) -> None:
    path = tmp_path / "atlas.env"
    write_dotenv(path, result())
    assert path.read_text() == (
        "ATLAS_VERSION=4\n"
        "ATLAS_ARTIFACT_ID=acme/web/vagrant.box/4\n"
        "ATLAS_ARTIFACT=acme/web\n"
        "ATLAS_ARTIFACT_TYPE=vagrant.box\n"
        f"ATLAS_FILE_SHA256={SHA}\n"
    )


def test_dotenv_lines_are_what_gitlab_accepts(tmp_path: Path) -> None:
    path = tmp_path / "atlas.env"
    write_dotenv(path, result())
    for line in path.read_text().splitlines():
        assert re.fullmatch(r"[A-Za-z0-9_]+=[^\"'#\n]*", line), line


def test_dotenv_replaces_an_earlier_report(tmp_path: Path) -> None:
    path = tmp_path / "atlas.env"
    path.write_text("STALE=1\n")
    write_dotenv(path, result())
    assert "STALE" not in path.read_text()


def test_dotenv_of_a_dry_run_has_empty_version_and_id() -> None:
    values = dotenv_values(result(None, dry_run=True))
    assert values["ATLAS_VERSION"] == ""
    assert values["ATLAS_ARTIFACT_ID"] == ""
    assert values["ATLAS_FILE_SHA256"] == SHA


def test_dotenv_without_a_file_has_an_empty_sha() -> None:
    assert dotenv_values(result(file=False))["ATLAS_FILE_SHA256"] == ""


@pytest.mark.parametrize(
    "values",
    [{"BAD-NAME": "x"}, {"A": "two\nlines"}, {"A": " padded"}, {"": "x"}, {"A": "tab\there"}],
)
def test_what_gitlab_cannot_read_is_refused(values: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="dotenv"):
        format_dotenv(values)


def test_unwritable_dotenv_is_refused_before_any_request(tmp_path: Path) -> None:
    from atlas_ci.errors import ConfigError
    from atlas_ci.reporters import check_writable

    with pytest.raises(ConfigError, match="does not exist"):
        check_writable(tmp_path / "missing" / "atlas.env", "--dotenv")
    with pytest.raises(ConfigError, match="is a directory"):
        check_writable(tmp_path, "--dotenv")
    check_writable(tmp_path / "atlas.env", "--dotenv")  # a new file in a writable dir: fine
