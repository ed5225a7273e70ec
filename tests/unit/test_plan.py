"""Metadata parsing, builder metadata, merging, type and provider inference."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_ci.errors import AtlasCIError, ConfigError, InputFileError
from atlas_ci.manifest import Artifact
from atlas_ci.metadata import load_metadata_file, parse_metadata_pairs, parse_metadata_text
from atlas_ci.plan import builder_metadata, infer_artifact_type, merge_metadata, vagrant_provider
from tests.ids import short_id


def artifact(
    builder_type: str = "",
    id: str = "",
    files: tuple[str, ...] = (),
    metadata: dict[str, str] | None = None,
) -> Artifact:
    return Artifact(
        build="b",
        builder_type=builder_type,
        id=id,
        files=tuple(Path("/out") / name for name in files),
        metadata=metadata,
        source="packer-manifest.json",
    )


# --- YAML and JSON text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("5", "5"),
        ("true", "true"),
        ("yes", "yes"),
        ("1.10", "1.10"),
        ("0x10", "0x10"),
        ("010", "010"),
        ("1_000", "1_000"),
        ("1e3", "1e3"),
        (".inf", ".inf"),
        ("2024-01-02", "2024-01-02"),
        ("=", "="),
        ('"quoted: yes"', "quoted: yes"),
        ("'single'", "single"),
        ('""', ""),
        ("!!int 7", "7"),
        ("ami-1234 # a comment", "ami-1234"),
    ],
)
def test_yaml_scalars_keep_the_text_written(written: str, expected: str) -> None:
    assert parse_metadata_text(f"key: {written}\n", "m.yml") == {"key": expected}


def test_yaml_keys_keep_their_text_too() -> None:
    assert parse_metadata_text("5: a\ntrue: b\n1.10: c\n", "m.yml") == {
        "5": "a",
        "true": "b",
        "1.10": "c",
    }


def test_yaml_merge_key_lays_explicit_keys_over_merged_ones() -> None:
    assert parse_metadata_text("<<: {x: 1, y: 2}\ny: 3\n", "m.yml") == {"x": "1", "y": "3"}


@pytest.mark.parametrize("written", ["~", "null", "Null", ""])
def test_yaml_null_value_is_refused(written: str) -> None:
    with pytest.raises(ConfigError, match=r"metadata 'key' in m.yml has no value \(null\)") as exc:
        parse_metadata_text(f"key: {written}\n", "m.yml")
    assert 'write ""' in exc.value.hint


def test_json_numbers_keep_their_literal_text() -> None:
    text = '{"a": 1.10, "b": 5, "c": 1e3, "d": -0, "e": "s"}'
    assert parse_metadata_text(text, "m.json") == {
        "a": "1.10",
        "b": "5",
        "c": "1e3",
        "d": "-0",
        "e": "s",
    }


def test_json_booleans_become_true_and_false() -> None:
    assert parse_metadata_text('{"t": true, "f": false}', "m.json") == {"t": "true", "f": "false"}


def test_json_null_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'k' in m.json has no value"):
        parse_metadata_text('{"k": null}', "m.json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1, 2]\n", "'a' in src is a list; metadata values must be scalars"),
        ("a: {b: c}\n", "'a' in src is a mapping"),
        ('{"a": {"b": 1}}', "'a' in src is a mapping"),
        ("- a\n- b\n", "metadata in src is a list, not a mapping"),
        ("just text", "metadata in src is a string, not a mapping"),
        ("5", "metadata in src is a number, not a mapping"),
        ("true", "metadata in src is a boolean, not a mapping"),
        ("", "metadata in src is empty, not a mapping"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ("5: a\n'5': b\n", "duplicate key '5'"),
        ("a: b: c\n", "not valid YAML at line 1, column 5"),
        ("a: !!python/object:os.system x\n", "not valid YAML at line 1"),
        ("a: !custom x\n", "not valid YAML"),
        ("? [a]\n: b\n", "not valid YAML"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
        ('"": x\n', "metadata in src has an empty key"),
        ("~: x\n", "metadata in src has a null key"),
        ("a: |\n  two\n  lines\n", "contains a newline or NUL"),
        ('a: "x\\0y"\n', "contains a newline or NUL"),
        ('{"a\\nb": "x"}', "contains a newline or NUL"),
        ('{"a": "\\ud800"}', "not valid Unicode text"),
        ("a: b\x1f\n", "contains the control character U+001F at offset 4"),
        ("[" * 5000, "nested too deeply"),
        ('{"a": ' * 5000, "nested too deeply"),
        ("a: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
    ids=short_id,
)
def test_bad_metadata_text_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_metadata_text(text, "src")
    line = exc.value.one_line()
    assert message in line
    assert "\n" not in line


def test_metadata_limits() -> None:
    ok = {f"k{i}": "v" for i in range(256)}
    assert parse_metadata_text("\n".join(f"{k}: {v}" for k, v in ok.items()), "s") == ok
    too_many = "\n".join(f"k{i}: v" for i in range(257))
    with pytest.raises(ConfigError, match=r"257 entries, more than 256"):
        parse_metadata_text(too_many, "s")
    assert parse_metadata_text(f"{'k' * 256}: {'v' * 4096}", "s") == {"k" * 256: "v" * 4096}
    with pytest.raises(ConfigError, match=r"257 characters, more than 256"):
        parse_metadata_text(f"{'k' * 257}: v", "s")
    with pytest.raises(ConfigError, match=r"4097 characters, more than 4096"):
        parse_metadata_text(f"k: {'v' * 4097}", "s")


@pytest.mark.slow  # fuzzing
@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_metadata_text_raises_only_tool_errors(text: str) -> None:
    try:
        result = parse_metadata_text(text, "fuzz")
    except AtlasCIError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
_json_like = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@pytest.mark.slow  # fuzzing
@settings(max_examples=200, deadline=None)
@given(_json_like)
def test_parse_metadata_json_raises_only_tool_errors(value: object) -> None:
    with contextlib.suppress(AtlasCIError):
        parse_metadata_text(json.dumps(value), "fuzz")


# --- KEY=VALUE pairs and files --------------------------------------------------------------


def test_pairs_split_at_first_equals_and_keep_text() -> None:
    pairs = ["provider=virtualbox", "url=https://x/?a=b", "version=1.10", "empty="]
    assert parse_metadata_pairs(pairs) == {
        "provider": "virtualbox",
        "url": "https://x/?a=b",
        "version": "1.10",
        "empty": "",
    }


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["novalue"], "metadata entry 'novalue' is not KEY=VALUE"),
        (["=v"], "has an empty key"),
        (["a=1", "a=2"], "metadata key 'a' is given more than once"),
        (["a=x\ny"], "contains a newline or NUL"),
        ([f"{'k' * 257}=v"], "more than 256"),
        (["k=" + "v" * 4097], "more than 4096"),
        ([f"k{i}=v" for i in range(257)], "more than 256 metadata entries"),
    ],
)
def test_bad_pairs_name_the_pair(pairs: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_metadata_pairs(pairs)


def test_single_string_is_one_pair() -> None:
    assert parse_metadata_pairs("a=b") == {"a": "b"}


def test_load_metadata_file_reads_yaml(tmp_path: Path) -> None:
    path = tmp_path / "meta.yml"
    path.write_text("version: 1.10\nprovider: virtualbox\n")
    assert load_metadata_file(str(path)) == {"version": "1.10", "provider": "virtualbox"}


def test_load_metadata_file_missing_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"metadata file '.*nope.yml' not found"):
        load_metadata_file(str(tmp_path / "nope.yml"))


def test_load_metadata_file_bad_content_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "meta.yml"
    path.write_text("a: [1]\n")
    with pytest.raises(ConfigError, match=r"in metadata file '.*meta.yml' is a list"):
        load_metadata_file(str(path))


def test_load_metadata_file_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "meta.yml"
    path.write_bytes(b"a: \xff\n")
    with pytest.raises(InputFileError, match=r"not UTF-8 text"):
        load_metadata_file(str(path))


# --- builder metadata and merging ---------------------------------------------------------


def test_amazon_id_gives_region_metadata() -> None:
    amazon = artifact("amazon-ebs", "us-east-1:ami-1111,us-west-2:ami-2222")
    assert builder_metadata(amazon) == {
        "region.us-east-1": "ami-1111",
        "region.us-west-2": "ami-2222",
    }


def test_amazon_without_ami_gives_empty_metadata() -> None:
    assert builder_metadata(artifact("amazon-ebs", "")) == {}


def test_vagrant_box_from_amazon_gets_no_region_metadata() -> None:
    assert builder_metadata(artifact("amazon-ebs", "aws", files=("x.box",))) is None
    assert builder_metadata(artifact("amazon-ebs", "not an ami list")) is None


def test_artifact_json_metadata_is_the_builder_metadata() -> None:
    given_metadata = {"region.eu-west-1": "ami-9"}
    amazon = artifact("amazon-ebs", "us-east-1:ami-1", metadata=given_metadata)
    assert builder_metadata(amazon) == given_metadata
    assert builder_metadata(artifact("virtualbox-iso", metadata={"a": "b"})) == {"a": "b"}
    assert builder_metadata(artifact("virtualbox-iso")) is None


@pytest.mark.parametrize(
    ("builder", "config", "expected"),
    [
        (None, None, None),
        ({}, None, {}),
        (None, {}, {}),
        ({"a": "1", "b": "2"}, {"b": "config"}, {"a": "1", "b": "config"}),
        (None, {"c": "3"}, {"c": "3"}),
    ],
)
def test_merge_config_wins_and_null_only_when_both_absent(
    builder: dict[str, str] | None,
    config: dict[str, str] | None,
    expected: dict[str, str] | None,
) -> None:
    assert merge_metadata(builder, config) == expected


def test_merge_does_not_modify_its_inputs() -> None:
    builder = {"a": "1"}
    merge_metadata(builder, {"a": "2"})
    assert builder == {"a": "1"}


# --- artifact type and vagrant provider ---------------------------------------------------


@pytest.mark.parametrize(
    ("builder_type", "files", "expected"),
    [
        ("amazon-ebs", (), "amazon.ami"),
        ("amazon-chroot", (), "amazon.ami"),
        ("virtualbox-iso", ("package.box",), "vagrant.box"),
        ("amazon-ebs", ("aws.BOX",), "vagrant.box"),
        ("docker", ("export.tar",), "docker.image"),
        ("docker", ("image.box",), "vagrant.box"),
        ("googlecompute", (), "googlecompute.image"),
        ("virtualbox-iso", ("a.vmdk", "a.ovf"), None),
        ("virtualbox-iso", ("a.box", "b.box"), None),
        ("null", (), None),
        ("", (), None),
    ],
)
def test_infer_artifact_type(
    builder_type: str, files: tuple[str, ...], expected: str | None
) -> None:
    assert infer_artifact_type(artifact(builder_type, files=files)) == expected


@pytest.mark.parametrize(
    ("builder_type", "artifact_id", "expected"),
    [
        ("virtualbox-iso", "virtualbox", "virtualbox"),
        ("amazon-ebs", "aws", "aws"),
        ("vmware-iso", "vmware_desktop", "vmware_desktop"),
        ("qemu", "libvirt", "libvirt"),
        ("null", "Hyperv", "hyperv"),
        ("virtualbox-ovf", "VM", "virtualbox"),
        ("vmware-vmx", "", "vmware_desktop"),
        ("qemu", "VM", "libvirt"),
        ("parallels-iso", "", "parallels"),
        ("hyperv-vmcx", "", "hyperv"),
        ("docker", "Container", None),
        ("", "", None),
    ],
)
def test_vagrant_provider(builder_type: str, artifact_id: str, expected: str | None) -> None:
    found = vagrant_provider(artifact(builder_type, artifact_id))
    assert (found[0] if found else None) == expected


def test_vagrant_provider_says_where_it_came_from() -> None:
    assert vagrant_provider(artifact("qemu", "virtualbox")) == (
        "virtualbox",
        "from the artifact id 'virtualbox'",
    )
    assert vagrant_provider(artifact("qemu", "VM")) == ("libvirt", "from the builder type 'qemu'")
