from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from atlas_ci.cli import build_parser
from atlas_ci.errors import ConfigError
from atlas_ci.settings import Inputs, Settings, api_url, normalise_base_url, parse_go_int

ENV = {"ATLAS_TOKEN": "tok-123456"}


def make(env: dict[str, str] | None = None, **flags: object) -> Settings:
    flags.setdefault("artifact", "acme/web")
    return Settings.from_inputs(Inputs(**flags), ENV if env is None else env)


@pytest.mark.parametrize(
    ("raw", "base", "auth"),
    [
        ("https://atlas.hashicorp.com", "https://atlas.hashicorp.com", "/api/v1/authenticate"),
        (
            "https://atlas.hashicorp.com/api/v1",
            "https://atlas.hashicorp.com",
            "/api/v1/authenticate",
        ),
        (
            "https://atlas.hashicorp.com/api/v1/",
            "https://atlas.hashicorp.com",
            "/api/v1/authenticate",
        ),
        ("http://h/prefix", "http://h/prefix", "/prefix/api/v1/authenticate"),
        ("http://h//prefix//", "http://h/prefix", "/prefix/api/v1/authenticate"),
        ("http://h/prefix/api/v1?x=1", "http://h/prefix", "/prefix/api/v1/authenticate"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080", "/api/v1/authenticate"),
    ],
)
def test_base_url_normalisation(raw: str, base: str, auth: str) -> None:
    assert normalise_base_url(raw) == base
    assert api_url(base, "authenticate").endswith(auth)
    assert api_url(base, "authenticate") == base.split("/", 3)[0] + "//" + base.split("/")[2] + auth


@pytest.mark.parametrize(
    ("parts", "path"),
    [
        (("artifacts", "u", "n"), "/api/v1/artifacts/u/n"),
        (("artifacts", "my user", "n\u00e9"), "/api/v1/artifacts/my%20user/n%C3%A9"),
        (("artifacts", "u", "n?x"), "/api/v1/artifacts/u/n%3Fx"),
        (("artifacts", "u", "n", "amazon.ami"), "/api/v1/artifacts/u/n/amazon.ami"),
        (("artifacts", "u", "n", "a/b"), "/api/v1/artifacts/u/n/a/b"),
        (("artifacts", "u@x", "n+1"), "/api/v1/artifacts/u@x/n+1"),
    ],
)
def test_path_escaping_follows_go(parts: tuple[str, ...], path: str) -> None:
    assert api_url("http://h", *parts) == "http://h" + path


@pytest.mark.parametrize("raw", ["atlas.example.com", "127.0.0.1:8080", "ftp://h", "http://"])
def test_base_url_without_scheme_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        normalise_base_url(raw)
    assert raw in err.value.message
    assert "https://" in err.value.one_line()


@pytest.mark.parametrize(
    ("text", "value"),
    [("0x10", 16), ("010", 8), ("-5", -5), ("+7", 7), ("0", 0), ("42", 42), ("0X1f", 31)],
)
def test_go_base0_integers(text: str, value: int) -> None:
    assert parse_go_int("ATLAS_BUILD_ID", text) == value


@pytest.mark.parametrize("text", ["abc", "08", "1.5", " 1", "0x", "9" * 30, "0o"])
def test_bad_build_id_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="ATLAS_BUILD_ID"):
        parse_go_int("ATLAS_BUILD_ID", text)


def test_ids_default_to_zero_and_parse_from_env() -> None:
    assert (make().build_id, make().compile_id) == (0, 0)
    s = make(env={**ENV, "ATLAS_BUILD_ID": "0x10", "ATLAS_COMPILE_ID": "010"})
    assert (s.build_id, s.compile_id) == (16, 8)


@pytest.mark.parametrize("slug", ["a", "a/b/c", "/b", "a/", "", "a//b"])
def test_malformed_slug(slug: str) -> None:
    with pytest.raises(ConfigError) as err:
        make(artifact=slug)
    assert "artifact" in err.value.one_line()


def test_token_comes_from_env_and_never_prints() -> None:
    s = make()
    assert s.token is not None and s.token.reveal() == "tok-123456"
    assert "tok-123456" not in repr(s) and "tok-123456" not in str(s.token)
    assert "tok-123456" not in " ".join(s.describe_sources())


def test_missing_token_is_an_error_unless_no_token() -> None:
    with pytest.raises(ConfigError, match="ATLAS_TOKEN"):
        make(env={})
    assert make(env={}, no_token=True).token is None


def test_precedence_flag_over_env_over_default() -> None:
    env = {**ENV, "ATLAS_ADDRESS": "http://env.example"}
    assert make(env=env).atlas_url == "http://env.example"
    assert make(env=env).sources["atlas_url"] == "env ATLAS_ADDRESS"
    assert make(env=env, atlas_url="http://flag.example").atlas_url == "http://flag.example"
    assert make().atlas_url == "https://atlas.hashicorp.com"


def a_pem_certificate() -> str:
    """One real CA certificate in PEM (from the bundle requests ships with)."""
    import certifi

    text = Path(certifi.where()).read_text("ascii")
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    return text[start:end] + "\n"


def test_tls_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(a_pem_certificate())
    assert make().verify is True
    assert make(ca_file=str(ca)).verify == str(ca)
    assert make(env={**ENV, "ATLAS_CAFILE": str(ca), "ATLAS_CAPATH": str(tmp_path)}).verify == str(
        ca
    )
    assert make(env={**ENV, "ATLAS_CAPATH": str(tmp_path)}).verify == str(tmp_path)
    assert make(env={**ENV, "ATLAS_TLS_NOVERIFY": "1"}).verify is False
    assert make(insecure=True).verify is False
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        make(ca_file=str(tmp_path / "missing.pem"))


def test_manifest_and_artifact_json_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="both given"):
        make(manifest="m.json", artifact_json="a.json")
    assert make().manifest == "packer-manifest.json"
    assert make(artifact_json="a.json").manifest is None


@pytest.mark.parametrize(("flag", "value"), [("retries", "x"), ("retries", "-1"), ("timeout", "0")])
def test_bad_numbers(flag: str, value: str) -> None:
    with pytest.raises(ConfigError):
        make(**{flag: value})


_OUT_OF_RANGE = ["inf", "-inf", "nan", "1e309", "1e20", "-1"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        *(("timeout", v) for v in [*_OUT_OF_RANGE, "86401", "0.09"]),
        *(("max_wait", v) for v in [*_OUT_OF_RANGE, "3601"]),
        *(("retries", v) for v in ["1e309", "-1", "101", "99999999999999999999999"]),
    ],
)
def test_every_number_outside_its_documented_range_is_exit_2(flag: str, value: str) -> None:
    """inf reached a thread's wait (OverflowError, exit 1); nan timed every try out at once."""
    with pytest.raises(ConfigError) as err:
        make(**{flag: value})
    assert err.value.exit_code == 2
    assert f"--{flag.replace('_', '-')} {value!r}" in err.value.one_line()


@pytest.mark.parametrize(
    ("flag", "value", "field", "expected"),
    [
        ("timeout", "86400", "read_timeout", 86400.0),
        ("timeout", "0.1", "read_timeout", 0.1),
        ("max_wait", "3600", "max_wait", 3600.0),
        ("max_wait", "0", "max_wait", 0.0),
        ("retries", "100", "retries", 100),
        ("retries", "0", "retries", 0),
    ],
)
def test_the_bounds_of_each_range_are_accepted(
    flag: str, value: str, field: str, expected: float
) -> None:
    assert getattr(make(**{flag: value}), field) == expected


def test_a_huge_retry_after_waits_at_most_the_longest_max_wait() -> None:
    from atlas_ci.retry import RetryPolicy
    from atlas_ci.settings import MAX_WAIT_RANGE

    slept: list[float] = []
    policy = RetryPolicy(retries=1, max_wait=MAX_WAIT_RANGE[1], sleep=slept.append)
    assert policy.tries("x", print).again("429", "9" * 400)  # float() of it is inf
    assert slept == [MAX_WAIT_RANGE[1]]


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HTTP_PROXY", "http://u:hunter2pw@127.0.0.1:99999", "Port out of range"),
        ("HTTPS_PROXY", "htp://u:hunter2pw@127.0.0.1:3128", "scheme 'htp'"),
        ("http_proxy", "http://[::1", "Invalid IPv6 URL"),
        ("ALL_PROXY", "http://u:hunter2pw@:3128", "names no host"),
        ("https_proxy", "http://127.0.0.1:port", "not a valid URL"),
    ],
)
def test_a_malformed_proxy_is_exit_2_naming_the_variable_never_its_password(
    variable: str, value: str, problem: str
) -> None:
    """They surfaced at the first request as "the registry's answer is malformed" (exit 5)."""
    with pytest.raises(ConfigError) as err:
        make(env={**ENV, variable: value})
    line = err.value.one_line()
    assert err.value.exit_code == 2
    assert line.startswith(f"{variable} ") and problem in line, line
    assert "hunter2pw" not in line


@pytest.mark.parametrize(
    "value", ["http://u:p@127.0.0.1:3128", "127.0.0.1:3128", "socks5h://h:1080", "https://[::1]:8"]
)
def test_a_usable_proxy_is_accepted(value: str) -> None:
    assert make(env={**ENV, "HTTPS_PROXY": value}).artifact == "acme/web"


@pytest.mark.parametrize("content", ["der", "garbage", "empty"])
@pytest.mark.parametrize("how", ["ca_file", "ATLAS_CAFILE"])
def test_a_ca_file_that_cannot_be_loaded_is_exit_2(tmp_path: Path, content: str, how: str) -> None:
    """A DER file was "TLS error", retried 5 times, then "check that the registry is up"."""
    import ssl

    ca = tmp_path / "ca.crt"
    if content == "der":
        ca.write_bytes(ssl.PEM_cert_to_DER_cert(a_pem_certificate()))
    else:
        ca.write_bytes(b"\x00garbage\xff" if content == "garbage" else b"")
    given = {"ca_file": str(ca)} if how == "ca_file" else {"env": {**ENV, "ATLAS_CAFILE": str(ca)}}
    with pytest.raises(ConfigError) as err:
        make(**given)  # type: ignore[arg-type]
    assert err.value.exit_code == 2
    assert "cannot be loaded as PEM" in err.value.one_line() and str(ca) in err.value.one_line()


def test_a_ca_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    from atlas_ci.cafile import CA_FILE_LIMIT

    ca = tmp_path / "huge.pem"
    with ca.open("wb") as fh:
        fh.truncate(CA_FILE_LIMIT + 1)  # sparse: nothing to read, and nothing is
    with pytest.raises(ConfigError, match="more than the 16 MiB"):
        make(ca_file=str(ca))


# --- one typed Inputs, filled by the CLI and the action ---------------------------------


def upload_subparser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["upload"]


def test_every_upload_flag_is_a_field_of_inputs() -> None:
    names = {f.name for f in dataclasses.fields(Inputs)}
    dests = {a.dest for a in upload_subparser()._actions if a.dest not in ("help", "debug")}
    assert dests <= names, dests - names


def test_the_cli_fills_inputs_with_every_upload_flag() -> None:
    ns = build_parser().parse_args(
        [
            "upload",
            "--artifact=acme/web",
            "--artifact-type=vagrant.box",
            "--atlas-url=http://h",
            "--no-token",
            "--ca-file=ca.pem",
            "--insecure",
            "--retries=2",
            "--max-wait=3",
            "--timeout=4",
            "--json",
            "--metadata=a=1",
            "--metadata=b=2",
            "--metadata-file=m.yml",
            "--manifest=m.json",
            "--artifact-json=a.json",
            "--build=web",
            "--build=db",
            "--dry-run",
            "--dotenv=out.env",
            "--workspace=ws",
            "--allow-outside-workspace",
        ]
    )
    assert Inputs.from_argparse(ns) == Inputs(
        artifact="acme/web",
        artifact_type="vagrant.box",
        atlas_url="http://h",
        no_token=True,
        ca_file="ca.pem",
        insecure=True,
        retries="2",
        max_wait="3",
        timeout="4",
        json=True,
        metadata_pairs=["a=1", "b=2"],
        metadata_file="m.yml",
        manifest="m.json",
        artifact_json="a.json",
        builds=["web", "db"],
        dry_run=True,
        dotenv="out.env",
        workspace="ws",
        allow_outside_workspace=True,
    )


def test_search_filters_are_not_version_metadata() -> None:
    ns = build_parser().parse_args(["search", "--artifact=a/b", "--metadata=k=v"])
    assert Inputs.from_argparse(ns).metadata_pairs == ()
    assert ns.filters == ["k=v"]


def test_an_unknown_setting_name_is_refused_not_ignored() -> None:
    with pytest.raises(TypeError, match="require_token"):
        make(require_token=False)


def test_the_token_input_wins_over_the_env_and_is_named_as_an_input() -> None:
    s = Settings.from_inputs(Inputs(given_as="input", artifact="a/b", token=" tok-input-1 "), ENV)
    assert s.token is not None and s.token.reveal() == "tok-input-1"
    assert s.sources["token"] == "input"
    assert "artifact from input" in s.describe_sources()
