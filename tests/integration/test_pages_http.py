"""The web pages' sessions over plain HTTP against a real ``atlas-ci serve`` (the browser's view
is tests/integration/test_pages_browser.py): the cookie's attributes, ``Secure`` behind an https
``--public-url``, what a session may and may not do, bad forms."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.integration.registry_admin import new_token
from tests.integration.registry_api import TIMEOUT, create_artifact, publish
from tests.registry_proc import RegistryProcess

HTML = {"Accept": "text/html"}


def _sign_in(url: str, token: str, origin: str) -> requests.Response:
    return requests.post(
        url + "/-/sign-in",
        data={"token": token},
        headers={**HTML, "Origin": origin},
        allow_redirects=False,
        timeout=TIMEOUT,
    )


def test_the_session_cookie_and_what_it_may_do(registry: RegistryProcess) -> None:
    create_artifact(registry, "acme", "secret")
    publish(registry, b"private", "acme/secret/vagrant.box", metadata={"provider": "vb"})
    token = new_token(registry, "alice")
    signed = _sign_in(registry.url, token, registry.url)
    assert signed.status_code == 303 and signed.headers["Location"] == "/"
    cookie = signed.headers["Set-Cookie"]
    assert cookie.startswith("atlas_session=")
    assert "; HttpOnly" in cookie and "; SameSite=Strict" in cookie and "Secure" not in cookie
    jar = {"atlas_session": signed.cookies["atlas_session"]}
    assert token not in cookie
    # A session reads (as alice, who has no role in acme: the box stays hidden) ...
    page = requests.get(registry.url + "/", cookies=jar, headers=HTML, timeout=TIMEOUT)
    assert "Signed in as <strong>alice</strong>" in page.text
    assert "acme/secret" not in page.text
    # ... and never writes through an API, whatever a browser is made to send.
    write = requests.post(
        registry.url + "/api/v1/artifacts",
        json={"artifact": {"username": "alice", "name": "x"}},
        cookies=jar,
        timeout=TIMEOUT,
    )
    assert write.status_code == 401
    out = requests.post(
        registry.url + "/-/sign-out",
        headers={**HTML, "Origin": registry.url},
        cookies=jar,
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert out.status_code == 303
    assert "Max-Age=0" in out.headers["Set-Cookie"]
    after = requests.get(registry.url + "/", cookies=jar, headers=HTML, timeout=TIMEOUT)
    assert "Signed in as" not in after.text
    assert token not in registry.stderr_text()


def test_bad_forms_are_refused(registry: RegistryProcess) -> None:
    url = registry.url + "/-/sign-in"
    own = {**HTML, "Origin": registry.url}
    as_json = requests.post(url, json={"token": "x"}, headers=own, timeout=TIMEOUT)
    assert as_json.status_code == 415
    huge = requests.post(url, data={"token": "x" * 20_000}, headers=own, timeout=TIMEOUT)
    assert huge.status_code == 413
    wrong = _sign_in(registry.url, "atlas_wrong", registry.url)
    assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers
    assert "atlas_wrong" not in wrong.text


def test_behind_https_the_cookie_is_secure(tmp_path: Path) -> None:
    public = "https://registry.example"
    with RegistryProcess(tmp_path / "data", extra_args=[f"--public-url={public}"]) as registry:
        signed = _sign_in(registry.url, registry.token, public)
        assert signed.status_code == 303
        assert "; Secure" in signed.headers["Set-Cookie"]
        # The server's own http address is not the origin its pages are served from.
        assert _sign_in(registry.url, registry.token, registry.url).status_code == 403
        assert registry.token not in registry.stderr_text()
