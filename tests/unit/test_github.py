from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_ci import github
from atlas_ci.errors import ConfigError
from atlas_ci.redaction import register
from atlas_ci.result import BuildResult, FileInfo, Result

SHA = "ab" * 32


def build(name: str = "web", version: int | None = 4, **kw: object) -> BuildResult:
    fields: dict[str, object] = {
        "build": name,
        "artifact": "acme/web",
        "artifact_type": "vagrant.box",
        "version": version,
        "file": FileInfo(size=3 * 1024 * 1024, sha256=SHA),
        "seconds": 2.0,
        "metadata": {"provider": "virtualbox"},
    }
    fields.update(kw)
    return BuildResult(**fields)  # type: ignore[arg-type]


def unescape_data(text: str) -> str:
    """The runner's UnescapeData: %0D, %0A, then %25 (ActionCommand.cs)."""
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(text: str) -> str:
    return (
        text.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
    )


# --- escaping and commands ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("100%", "100%25"),
        ("a\nb", "a%0Ab"),
        ("a\r\nb", "a%0D%0Ab"),
        ("%0A", "%250A"),
        ("a:b,c", "a:b,c"),
    ],
)
def test_escape_data(raw: str, escaped: str) -> None:
    assert github.escape_data(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a:b,c", "a%3Ab%2Cc"),
        ("50%:x", "50%25%3Ax"),
        ("l1\nl2", "l1%0Al2"),
        ("%3A", "%253A"),
    ],
)
def test_escape_property(raw: str, escaped: str) -> None:
    assert github.escape_property(raw) == escaped


@pytest.mark.slow  # fuzzing
@given(st.text())
def test_data_escaping_round_trips_through_the_runners_unescape(text: str) -> None:
    escaped = github.escape_data(text)
    assert "\n" not in escaped
    assert "\r" not in escaped
    assert unescape_data(escaped) == text


@pytest.mark.slow  # fuzzing
@given(st.text())
def test_property_escaping_round_trips_and_cannot_split_properties(text: str) -> None:
    escaped = github.escape_property(text)
    assert not set(escaped) & set(",:\r\n")
    assert unescape_property(escaped) == text


def test_command_with_properties_in_order_and_none_left_out() -> None:
    line = github.command("error", "bad\nthing", file="a,b.json", line=3, title=None)
    assert line == "::error file=a%2Cb.json,line=3::bad%0Athing"


def test_annotations() -> None:
    assert github.error("boom") == "::error::boom"
    assert github.warning("w", title="T: x") == "::warning title=T%3A x::w"
    assert github.notice("n", file="m.json", line=1) == "::notice file=m.json,line=1::n"
    assert github.debug("50%") == "::debug::50%25"


def test_annotation_never_carries_a_registered_secret() -> None:
    register("s3cr3t-value-xyz")
    line = github.error("server said s3cr3t-value-xyz", title="token s3cr3t-value-xyz")
    assert "s3cr3t-value-xyz" not in line
    assert "***" in line


def test_group_folds_what_is_written_inside(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with open(path, "w") as out:
        with github.group("Upload: a,b", out):
            out.write("inside\n")
        with pytest.raises(RuntimeError), github.group("second", out):
            raise RuntimeError("x")
    assert path.read_text().splitlines() == [
        "::group::Upload: a,b",
        "inside",
        "::endgroup::",
        "::group::second",
        "::endgroup::",
    ]


# --- masking --------------------------------------------------------------------------


def test_mask_of_a_single_line_value() -> None:
    assert github.add_mask("tok%en") == ["::add-mask::tok%25en"]


def test_mask_of_a_multi_line_value_covers_the_whole_then_each_line() -> None:
    # The runner masks per printed line, so each line needs its own mask.
    assert github.add_mask("line-one\nline-two\n\nline-one") == [
        "::add-mask::line-one%0Aline-two%0A%0Aline-one",
        "::add-mask::line-one",
        "::add-mask::line-two",
    ]


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_blank_values_get_no_mask(value: str) -> None:
    assert github.add_mask(value) == []


# --- neutralising untrusted lines ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("::error::pwned", "%3A:error::pwned"),
        ("   ::add-mask::x", "   %3A:add-mask::x"),
        ("\t::set-output name=version::9", "\t%3A:set-output name=version::9"),
        ("server says ##[set-output name=v;]9", "server says ##%5Bset-output name=v;]9"),
        ("ok\n::error::second line", "ok ::error::second line"),
        ("ok\r::error::bare CR", "ok ::error::bare CR"),
        ("a :: b", "a :: b"),
        ("plain", "plain"),
        ("##[a ##[b ##[c", "##%5Ba ##%5Bb ##%5Bc"),
        ("\x0b\u3000::error::x", "\x0b\u3000%3A:error::x"),
    ],
)
def test_neutralise(line: str, shown: str) -> None:
    assert github.neutralise(line) == shown


# What makes a line a command, and what hides it: drawn on purpose, since plain text almost
# never starts with "::" or holds "##[" (a neutralise that cut only the first "##[", or
# stripped only spaces and tabs before "::", passed a st.text() property).
_COMMAND_PARTS = st.sampled_from(
    ["::", "##[", "##", "#", "[", ":", "\n", "\r", "\r\n", " ", "\t", "\x0b", "\x0c", "\x1c",
     "\x85", "\u2003", "\u3000", "%", "%3A", "error", "set-output name=v::", "add-mask::"]
)  # fmt: skip
_COMMAND_LIKE = st.one_of(
    st.lists(st.one_of(_COMMAND_PARTS, st.text(max_size=4)), max_size=12).map("".join),
    st.tuples(st.text(st.sampled_from(" \t\x0b\x0c\x1c\u2003\u3000\xa0")), st.text()).map(
        lambda parts: parts[0] + "::" + parts[1]
    ),
    st.text(),
)


@pytest.mark.slow  # fuzzing
@given(_COMMAND_LIKE)
def test_a_neutralised_line_is_never_a_command(text: str) -> None:
    line = github.neutralise(text)
    # The runner's two parsers (ActionCommand.TryParseV2 / TryParse) and its line split.
    assert not line.lstrip().startswith("::")
    assert "##[" not in line
    assert "\n" not in line
    assert "\r" not in line


# --- booleans ---------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [(v, True) for v in ("true", "True", "TRUE")])
def test_toolkit_true(raw: str, value: bool) -> None:
    assert github.parse_bool("dry_run", raw) is value


@pytest.mark.parametrize("raw", ["false", "False", "FALSE"])
def test_toolkit_false(raw: str) -> None:
    assert github.parse_bool("dry_run", raw) is False


@pytest.mark.parametrize("raw", ["yes", "1", "tRUE", "", " true", "on"])
def test_other_booleans_are_a_config_error_naming_the_input(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        github.parse_bool("dry_run", raw)
    assert "dry_run" in err.value.one_line()
    assert "true or false" in err.value.one_line()


# --- outputs ----------------------------------------------------------------------------


def read_outputs(text: str) -> dict[str, str]:
    """A parser of the output file as the runner reads it (SetOutputFileCommand)."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line:
            i += 1
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        else:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
    return values


def test_single_line_outputs_are_name_equals_value(tmp_path: Path) -> None:
    path = tmp_path / "output"
    github.write_outputs(path, {"version": "4", "id": "acme/web/vagrant.box/4"})
    assert path.read_text() == "version=4\nid=acme/web/vagrant.box/4\n"


def test_outputs_are_appended_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "output"
    path.write_text("earlier=1\n")
    github.write_outputs(path, {"version": "4"})
    assert read_outputs(path.read_text()) == {"earlier": "1", "version": "4"}


def test_multi_line_output_uses_a_random_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "output"
    value = "line 1\nversion=666\nEOF\n"
    github.write_outputs(path, {"notes": value, "version": "4"})
    text = path.read_text()
    first = text.splitlines()[0]
    assert re.fullmatch(r"notes<<ghadelimiter_[0-9a-f-]{36}", first)
    assert read_outputs(text) == {"notes": value, "version": "4"}


def test_delimiters_differ_between_calls() -> None:
    firsts = {github.format_output("x", "a\nb").splitlines()[0] for _ in range(50)}
    assert len(firsts) == 50


def test_a_delimiter_found_in_the_value_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    clash = uuid.UUID(int=1)
    fresh = uuid.UUID(int=2)
    draws = iter([clash, fresh])
    monkeypatch.setattr(github.uuid, "uuid4", lambda: next(draws))
    value = f"smuggled\nghadelimiter_{clash}\nversion=666"
    text = github.format_output("notes", value)
    assert text == f"notes<<ghadelimiter_{fresh}\n{value}\nghadelimiter_{fresh}\n"


@pytest.mark.slow  # fuzzing
@given(st.text(min_size=1))
def test_any_value_reads_back_exactly(value: str) -> None:
    value = value.replace("\r", "")  # the runner reads lines; CR handling is its own affair
    text = github.format_output("out", value)
    assert read_outputs(text) == {"out": value}


@pytest.mark.parametrize("name", ["", "a=b", "a<<b", "a\nb"])
def test_bad_output_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="output name"):
        github.format_output(name, "v")


# --- job summary ------------------------------------------------------------------------


def test_summary_table_has_one_row_per_build() -> None:
    result = Result(
        builds=(
            build("web", 4),
            build("worker", 7, file=None, seconds=0.25, artifact_type="amazon.ami"),
        )
    )
    text = github.summary_markdown(result)
    lines = text.splitlines()
    assert lines[0] == "### Atlas upload"
    assert "| build | artifact | type | version | size | sha256 | time | throughput |" in lines
    web = next(line for line in lines if line.startswith("| web "))
    assert web == (
        f"| web | acme/web | vagrant.box | 4 | 3.0 MiB | <code>{SHA}</code> | 2.0 s | 1.5 MiB/s |"
    )
    worker = next(line for line in lines if line.startswith("| worker "))
    assert worker == "| worker | acme/web | amazon.ami | 7 | no file |  | 0.2 s |  |"
    assert "Output id: <code>acme/web/amazon.ami/7</code>" in text


def test_summary_of_a_dry_run_says_nothing_was_created() -> None:
    text = github.summary_markdown(Result(builds=(build(version=None),), dry_run=True))
    assert text.startswith("### Atlas upload (dry run)")
    assert "| web | acme/web | vagrant.box | dry run | 3.0 MiB |" in text
    assert "Nothing was created" in text
    assert "MiB/s" not in text


def test_summary_cells_cannot_break_the_table_or_inject_html() -> None:
    text = github.summary_markdown(Result(builds=(build("a|b\n<script>x</script>"),)))
    row = next(line for line in text.splitlines() if line.startswith("| a"))
    assert row.startswith("| a\\|b &lt;script&gt;x&lt;/script&gt; | acme/web |")


def test_summary_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    path.write_text("# earlier step\n")
    github.write_summary(path, Result(builds=(build(),)))
    text = path.read_text()
    assert text.startswith("# earlier step\n### Atlas upload\n")


def test_error_summary_has_the_message_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    register("tok-in-message-123")
    github.write_error_summary(
        path, "authentication failed (tok-in-message-123)", "check the token input"
    )
    text = path.read_text()
    assert text.splitlines()[0] == "### Atlas upload failed"
    assert "**authentication failed (***)**" in text
    assert "check the token input" in text
    assert "tok-in-message-123" not in text
