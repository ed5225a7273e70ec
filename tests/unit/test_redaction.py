"""Secrets in URLs: what a log line may show of a URL, whatever the user typed."""

from __future__ import annotations

import pytest

from atlas_ci.errors import ConfigError
from atlas_ci.redaction import redact, redact_url
from atlas_ci.settings import Settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p4ss@h.example:8443/a?sig=s3cr3t", "https://h.example:8443/a?***"),
        ("http://u:p4ss@127.0.0.1:99999/x", "http://127.0.0.1:99999/x"),  # bad port: no crash
        ("http://u:p4ss@127.0.0.1:x/", "http://127.0.0.1:x/"),
        ("http://[::1]:8080/p", "http://[::1]:8080/p"),
    ],
)
def test_redact_url_drops_user_info_and_query(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_credentials_in_atlas_url_are_cut_from_every_line() -> None:
    Settings.from_sources(
        flags={"artifact": "a/b", "atlas_url": "https://ci-bot:Xy9-url-pass@h.example/"},
        env={"ATLAS_TOKEN": "tok-abcdef"},
    )
    line = redact("GET https://ci-bot:Xy9-url-pass@h.example/api failed; pass Xy9-url-pass")
    assert "Xy9-url-pass" not in line


def test_bad_port_with_credentials_is_a_config_error_without_them() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_sources(
            flags={"artifact": "a/b", "atlas_url": "http://u:n0t-shown@127.0.0.1:99999"},
            env={"ATLAS_TOKEN": "tok-abcdef"},
        )
    assert "n0t-shown" not in err.value.one_line()
    assert "is not a valid URL" in err.value.one_line()
