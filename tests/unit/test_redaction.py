"""Secrets in URLs: what a log line may show of a URL, whatever the user typed."""

from __future__ import annotations

import pytest

from atlas_ci.errors import ConfigError
from atlas_ci.redaction import redact, redact_url, register
from atlas_ci.settings import Inputs, Settings


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
    Settings.from_inputs(
        Inputs(artifact="a/b", atlas_url="https://ci-bot:Xy9-url-pass@h.example/"),
        {"ATLAS_TOKEN": "tok-abcdef"},
    )
    line = redact("GET https://ci-bot:Xy9-url-pass@h.example/api failed; pass Xy9-url-pass")
    assert "Xy9-url-pass" not in line


def test_bad_port_with_credentials_is_a_config_error_without_them() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_inputs(
            Inputs(artifact="a/b", atlas_url="http://u:n0t-shown@127.0.0.1:99999"),
            {"ATLAS_TOKEN": "tok-abcdef"},
        )
    assert "n0t-shown" not in err.value.one_line()
    assert "is not a valid URL" in err.value.one_line()


def test_the_summary_cuts_a_token_before_html_escaping_it() -> None:
    from atlas_ci import github

    token = "Tk&<>-summary-unit-0001"
    register(token)
    text = github.error_summary_markdown(f"the registry said {token}", f"not {token}")
    assert "Tk&amp;&lt;&gt;-summary-unit-0001" not in text
    assert token not in text
    assert text.count("***") == 2


@pytest.mark.parametrize("token", ["Tk|pipe-summary-0006", "Tk|&<-summary-0007"])
def test_the_summary_cuts_a_token_holding_a_pipe_before_escaping_it(token: str) -> None:
    """A table cell escapes ``|`` as ``\\|``, a form the redactor does not know: a cell that
    escapes (or only collapses whitespace) before cutting the token leaks it."""
    from atlas_ci import github
    from atlas_ci.result import BuildResult, Result

    register(token)
    row = BuildResult(
        build=f"web {token}",
        artifact="acme/web",
        artifact_type="vagrant.box",
        version=1,
        file=None,
        seconds=1.0,
        metadata=None,
    )
    texts = [
        github.summary_markdown(Result(builds=(row,))),
        github.error_summary_markdown(f"the registry said {token}", f"not {token}"),
    ]
    for text in texts:
        assert "-summary-000" not in text, text  # no form of it: raw, \\|-escaped or HTML
    assert "| web *** | acme/web |" in texts[0]


def test_redact_data_cuts_keys_and_values_before_they_are_encoded() -> None:
    import json

    from atlas_ci.redaction import redact_data

    token = 'Tk"\\-data-unit-0002'
    register(token)
    data = {"versions": [{"id": token, token: [1, f"x {token} y", None]}]}
    text = json.dumps(redact_data(data))
    assert json.loads(text) == {"versions": [{"id": "***", "***": [1, "x *** y", None]}]}


@pytest.mark.parametrize(
    "shown",
    [
        "Tk&amp;&lt;&gt;&quot;\\&#x27;%,:-forms-0003",  # html.escape
        "Tk&<>\\\"\\\\'%,:-forms-0003",  # JSON
        "Tk%26%3C%3E%22%5C%27%25%2C%3A-forms-0003",  # percent-encoded
        "Tk%26%3c%3e%22%5c%27%25%2c%3a-forms-0003",  # the same, lower case
        "Tk&<>\"\\'%25%2C%3A-forms-0003",  # a workflow command's property value
        "Tk&<>\"\\\\\\'%,:-forms-0003",  # repr, as a traceback shows it
    ],
)
def test_a_secret_is_cut_in_every_form_an_encoder_gives_it(shown: str) -> None:
    register("Tk&<>\"\\'%,:-forms-0003")
    assert redact(f"server said <{shown}>") == "server said <***>"
