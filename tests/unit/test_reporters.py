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


def test_an_output_path_that_is_not_a_regular_file_is_refused_before_any_request(
    tmp_path: Path,
) -> None:
    """A FIFO blocked the write for ever once the versions were made."""
    import os

    from atlas_ci.errors import ConfigError
    from atlas_ci.reporters import check_kind, check_writable

    fifo = tmp_path / "out.env"
    os.mkfifo(fifo)
    for stream_ok in (False, True):
        with pytest.raises(ConfigError, match=r"is a FIFO \(named pipe\), not a regular file"):
            check_writable(fifo, "--dotenv", stream_ok=stream_ok)
    with pytest.raises(ConfigError, match=r"GITHUB_STEP_SUMMARY .* is a FIFO"):
        check_kind(fifo, "GITHUB_STEP_SUMMARY")
    with pytest.raises(ConfigError, match="is a device"):
        check_writable("/dev/null", "GITHUB_OUTPUT")
    check_writable("/dev/null", "--dotenv", stream_ok=True)  # a terminal or /dev/null: meant
    check_kind(tmp_path / "not-yet.md", "GITHUB_STEP_SUMMARY")  # created by the write


def test_a_fifo_swapped_in_after_the_check_fails_the_write_at_once(tmp_path: Path) -> None:
    """No reader: ENXIO at once, where a plain open waited for one for ever."""
    import os
    import threading

    fifo = tmp_path / "out.env"
    os.mkfifo(fifo)
    raised: list[BaseException] = []

    def write() -> None:
        try:
            write_dotenv(fifo, result())
        except OSError as exc:
            raised.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(10)
    if writer.is_alive():
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # a reader: lets it go
        writer.join(10)
        pytest.fail("the write waited for a reader of the FIFO")
    assert [type(e) for e in raised] == [OSError]
    assert "No such device or address" in str(raised[0])


@pytest.mark.parametrize(
    ("artifact", "artifact_type"),
    [("acme/no\u00a0break", None), ("acme/web", "vagrant\u2003box"), ("acme/web\u3000", None)],
)
def test_names_a_dotenv_line_cannot_carry_are_refused_before_any_request(
    artifact: str, artifact_type: str | None
) -> None:
    """The settings accept a no-break space; the dotenv writer raised ValueError (exit 1)
    after the versions were made."""
    from atlas_ci.errors import ConfigError
    from atlas_ci.reporters import check_dotenv_values
    from atlas_ci.settings import Settings

    settings = Settings(artifact=artifact, artifact_type=artifact_type)
    with pytest.raises(ConfigError, match="--dotenv cannot carry ATLAS_ARTIFACT") as err:
        check_dotenv_values(settings)
    assert err.value.exit_code == 2
    check_dotenv_values(Settings(artifact="acme/web", artifact_type="vagrant.box"))


def test_versions_output_keeps_every_build_that_shares_a_name() -> None:
    def build(name: str, version: int | None) -> BuildResult:
        return BuildResult(
            build=name,
            artifact="acme/web",
            artifact_type="vagrant.box",
            version=version,
            file=None,
            seconds=0.1,
            metadata=None,
        )

    def keyed(*builds: tuple[str, int | None]) -> dict[str, int | None]:
        return Result(builds=tuple(build(n, v) for n, v in builds)).versions()

    assert keyed(("web", 1), ("db", 2)) == {"web": 1, "db": 2}  # unique names: as before
    assert keyed(("web", 1), ("web", 2), ("db", 3), ("web", 4)) == {
        "web": 1,
        "web#2": 2,
        "db": 3,
        "web#3": 4,
    }
    # A build really named web#2 keeps its name; the second web moves on to web#3.
    assert keyed(("web", 1), ("web", 2), ("web#2", 3)) == {"web": 1, "web#3": 2, "web#2": 3}
    assert keyed(("web", None), ("web", None)) == {"web": None, "web#2": None}  # a dry run
