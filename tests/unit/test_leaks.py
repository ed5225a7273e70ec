"""Paths by which a secret could reach output, each closed (found in review)."""

from __future__ import annotations

from pathlib import Path

import pytest
import responses

from atlas_ci import cli
from atlas_ci.client import AtlasClient, parse_version
from atlas_ci.errors import ConfigError, RegistryRefused
from atlas_ci.redaction import redact, register_url
from atlas_ci.retry import RetryPolicy
from atlas_ci.settings import Inputs, Settings, normalise_base_url

BASE = "https://atlas.example"
UPLOAD = "https://bin.example/binstore/SECRETPATH1234567?X-Amz-Signature=zzzsignature99&b=1"


def test_parts_of_an_upload_url_are_cut_but_not_ordinary_words() -> None:
    register_url(UPLOAD)
    quoted = "cannot store at /binstore/SECRETPATH1234567?X-Amz-Signature=zzzsignature99"
    cut = redact(quoted)
    assert "SECRETPATH1234567" not in cut
    assert "zzzsignature99" not in cut
    assert redact("file upload failed; binstore down") == "file upload failed; binstore down"


@responses.activate
def test_put_error_body_quoting_the_upload_path_is_cut(tmp_path: Path) -> None:
    upload = "https://bin.example/binstore/ANOTHERSECRET777?sig=presignedvalue42"
    parse_version({"version": 1, "upload_path": upload}, file=True)  # as the flow learns it
    responses.put(
        upload,
        status=422,
        json={"errors": ["bad write to /binstore/ANOTHERSECRET777?sig=presignedvalue42"]},
    )
    f = tmp_path / "a.box"
    f.write_bytes(b"abc")
    settings = Settings.from_inputs(
        Inputs(artifact="a/b", atlas_url=BASE), {"ATLAS_TOKEN": "tok-leak-test"}
    )
    api = AtlasClient(settings, policy=RetryPolicy(retries=0, sleep=lambda _s: None))
    with pytest.raises(RegistryRefused) as err:
        api.upload(upload, f, 3)
    line = err.value.one_line()
    assert "ANOTHERSECRET777" not in line
    assert "presignedvalue42" not in line


def test_password_in_a_url_without_scheme_is_not_shown() -> None:
    with pytest.raises(ConfigError) as err:
        normalise_base_url("deploy:S3cretPass@atlas.example.com")
    assert "S3cretPass" not in err.value.one_line()
    assert "***@atlas.example.com" in err.value.one_line()


def test_token_blanks_are_dropped_and_bad_characters_are_a_config_error() -> None:
    inputs = Inputs(artifact="a/b")
    s = Settings.from_inputs(inputs, {"ATLAS_TOKEN": " tok-with-newline\n"})
    assert s.token is not None
    assert s.token.reveal() == "tok-with-newline"
    with pytest.raises(ConfigError, match="HTTP header") as err:
        Settings.from_inputs(inputs, {"ATLAS_TOKEN": "tok\u20acvalue"})
    assert "tok\u20acvalue" not in err.value.one_line()
    with pytest.raises(ConfigError):
        Settings.from_inputs(inputs, {"ATLAS_TOKEN": "two words"})


@responses.activate
def test_search_json_drops_upload_path_in_any_case_and_cuts_echoed_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "search-json-token-0001"
    monkeypatch.setenv("ATLAS_TOKEN", token)
    responses.get(
        f"{BASE}/api/v1/artifacts/a/b/t/search",
        json={
            "versions": [
                {
                    "version": 2,
                    "Upload_Path": "https://bin.example/binstore/PENDINGSECRET99",
                    "metadata": {"note": f"made with {token}"},
                }
            ]
        },
    )
    code = cli.main(
        ["search", "--artifact", "a/b", "--artifact-type", "t", "--atlas-url", BASE, "--json"]
    )
    out = capsys.readouterr()
    assert code == 0
    assert "PENDINGSECRET99" not in out.out + out.err
    assert token not in out.out + out.err
    assert '"version":2' in out.out
