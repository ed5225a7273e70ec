"""The registry's web pages in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium against a real ``atlas-ci serve``, on SQLite and PostgreSQL.

One browser for the module and one server per backend, filled once (``site``); each test signs
out what it signed in. Under ``CI=true`` a missing chromium or chromedriver fails the tests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.registry_admin import admin, new_token
from tests.integration.registry_api import TIMEOUT, api, create_artifact, create_version, publish
from tests.postgres import fresh_database
from tests.registry_proc import RegistryProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

# What each payload would do if it ran: set window.pwned. The pages must show them as text.
SCRIPT = "<script>window.pwned = 'script'</script>"
IMG = "<img src=x onerror=\"window.pwned = 'img'\">"
LINK = "javascript:window.pwned = 'link'"
QUOTES = "\"'><b onmouseover=\"window.pwned = 'quote'\">"
HOSTILE_ID = f"ami-{SCRIPT}{QUOTES}"
HOSTILE_KEY = f"key {IMG}"
HOSTILE_VALUE = f"{LINK} {SCRIPT}"
HOSTILE_DESCRIPTION = f'Read me {SCRIPT} {IMG} [click]({LINK}) <a href="{LINK}">x</a> {QUOTES}'


def _browser_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (requirements-dev.txt)")
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, on a fresh profile; nothing downloaded."""
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="atlas-pages-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _vc(registry: RegistryProcess, method: str, path: str, body: object = None) -> Any:
    """A Vagrant Cloud API call with the administrator token; its JSON answer."""
    response = requests.request(
        method,
        registry.url + "/api/v1" + path,
        json=body,
        headers={"Authorization": f"Bearer {registry.token}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, (path, response.text)
    return response.json()


def _fill(registry: RegistryProcess) -> dict[str, Any]:
    """What every test looks at, made over HTTP: a public box with versions from Atlas uploads
    and from the Vagrant Cloud API, a private box, a hostile one, an amazon.ami artifact with
    hostile id and metadata; a reader ``alice`` of ``acme``."""
    admin(registry, "org", "create", "acme")
    for name in ("web", "secret", "hostile"):
        create_artifact(registry, "acme", name)
    box = b"a box file, small"
    slug = "acme/web/vagrant.box"
    publish(registry, box, slug, metadata={"provider": "virtualbox", "version": "1.2.0"})
    publish(registry, b"libvirt box", slug, metadata={"provider": "libvirt", "version": "1.2.0"})
    publish(registry, b"older box", slug, metadata={"provider": "virtualbox", "version": "1.1.0"})
    secret = b"the private box"
    publish(registry, secret, "acme/secret/vagrant.box", metadata={"provider": "virtualbox"})
    create_version(
        registry,
        "acme/hostile/amazon.ami",
        file=False,
        artifact_id=HOSTILE_ID,
        metadata={HOSTILE_KEY: HOSTILE_VALUE, "region": "eu-west-1"},
    )
    for name in ("web", "hostile"):
        admin(registry, "artifact", "set-visibility", f"acme/{name}", "public")
    web = "/box/acme/web"
    _vc(registry, "PUT", web, {"box": {"short_description": "Debian 12 for the web tier",
        "description": "Built nightly by CI from packer/web.pkr.hcl.\nNginx, no GUI."}})  # fmt: skip
    _vc(registry, "PUT", f"{web}/version/1.2.0", {"version": {"description": "Security updates."}})
    _vc(registry, "PUT", f"{web}/version/1.1.0/revoke")
    testing = {"version": "1.3.0", "description": "Testing; not released."}
    _vc(registry, "POST", f"{web}/versions", {"version": testing})
    candidate = b"a release candidate, from vagrant cloud publish"
    _vc(registry, "POST", f"{web}/version/1.3.0/providers", {"provider": {"name": "virtualbox"}})
    upload = _vc(registry, "GET", f"{web}/version/1.3.0/provider/virtualbox/upload")
    assert requests.put(upload["upload_path"], data=candidate, timeout=TIMEOUT).status_code == 200
    hostile = "/box/acme/hostile"
    _vc(registry, "PUT", hostile, {"box": {"short_description": SCRIPT,
        "description": HOSTILE_DESCRIPTION}})  # fmt: skip
    _vc(registry, "POST", f"{hostile}/versions",
        {"version": {"version": "1.0.0", "description": f"{IMG} {QUOTES}"}})  # fmt: skip
    admin(registry, "user", "create", "alice")
    admin(registry, "org", "add-member", "acme", "alice", "--role", "read")
    return {
        "box": box,
        "candidate": candidate,
        "secret": secret,
        "alice": new_token(registry, "alice", "--read-only"),
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One filled registry per backend, stopped at the end of the module."""
    database = fresh_database(request, request.param)
    data = tmp_path_factory.mktemp(f"pages-{request.param}") / "data"
    with RegistryProcess(data, database=database) as registry:
        yield {"registry": registry, **_fill(registry)}


def _open(browser: Any, registry: RegistryProcess, path: str) -> None:
    browser.get(registry.url + path)
    assert browser.execute_script("return document.readyState") == "complete"


def _text(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.TAG_NAME, "body").text)


def _navigate(browser: Any, element: Any) -> None:
    """Click ``element`` and wait for the page it leads to (a form post's answer included).

    A new document has a new ``performance.timeOrigin``. While the old one unloads,
    chromedriver can answer any command with a passing error ("Node with given id does not
    belong to the document", "no such execution context"), so the wait retries through those
    until the new document has loaded, or fails after 15 s.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    before = browser.execute_script("return performance.timeOrigin")
    element.click()

    def loaded(b: Any) -> bool:
        origin = b.execute_script("return performance.timeOrigin")
        ready = b.execute_script("return document.readyState")
        return bool(origin != before and ready == "complete")

    WebDriverWait(browser, 15, ignored_exceptions=(WebDriverException,)).until(loaded)


def _click(browser: Any, text: str) -> None:
    from selenium.webdriver.common.by import By

    _navigate(browser, browser.find_element(By.LINK_TEXT, text))


def _sign_in(browser: Any, registry: RegistryProcess, token: str) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, registry, "/-/sign-in")
    browser.find_element(By.ID, "token").send_keys(token)
    _navigate(browser, browser.find_element(By.CSS_SELECTOR, "form.sign-in button"))
    assert browser.current_url == registry.url + "/"


def _sign_out(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    _navigate(browser, browser.find_element(By.CSS_SELECTOR, ".who button"))
    assert "Sign in" in _text(browser)


def test_the_pages_link_from_the_home_page_to_a_box_and_its_download(
    browser: Any, site: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By

    registry: RegistryProcess = site["registry"]
    browser.delete_all_cookies()
    _open(browser, registry, "/")
    home = _text(browser)
    assert "acme/web" in home and "Debian 12 for the web tier" in home
    assert "acme/secret" not in home  # private: not for the anonymous
    _click(browser, "acme")
    assert browser.current_url == registry.url + "/acme"
    _click(browser, "acme/web")
    assert browser.current_url == registry.url + "/acme/web"
    page = _text(browser)
    for shown in (
        "Built nightly by CI from packer/web.pkr.hcl.\nNginx, no GUI.",
        "vagrant box add acme/web",
        'config.vm.box = "acme/web"',
        'config.vm.box_version = "~> 1.2.0"',
        f"export VAGRANT_SERVER_URL={registry.url}",
        "Security updates.",
        hashlib.sha256(site["box"]).hexdigest(),
    ):
        assert shown in page, shown
    statuses = [
        (v.find_element(By.TAG_NAME, "h3").text)
        for v in browser.find_elements(By.CSS_SELECTOR, "article.version")
    ]
    assert statuses == [
        "1.3.0 unreleased",
        "1.2.0 released current",
        "1.1.0 revoked",
    ]
    row = browser.find_element(
        By.XPATH, "//article[@class='version released']//tr[td[1]='virtualbox']"
    )
    href = row.find_element(By.LINK_TEXT, "Download").get_attribute("href")
    assert requests.get(href, timeout=TIMEOUT).content == site["box"]
    # An unreleased version's file, uploaded through the Vagrant Cloud API, is linked too.
    row = browser.find_element(By.XPATH, "//article[@class='version unreleased']//tbody/tr")
    href = row.find_element(By.LINK_TEXT, "Download").get_attribute("href")
    assert "/api/v1/box/acme/web/version/1.3.0/provider/virtualbox/download" in href
    assert requests.get(href, timeout=TIMEOUT).content == site["candidate"]
    # The artifact page of another type, linked from the box page.
    _open(browser, registry, "/acme/hostile")
    _click(browser, "amazon.ami")
    assert browser.current_url == registry.url + "/acme/hostile/amazon.ami"
    assert 'data "atlas_artifact"' in _text(browser)
    # Every page links its icon: the browser asks for no /favicon.ico (a namespace lookup).
    assert "GET /-/icon.svg 200" in registry.stderr_text()
    assert "/favicon.ico" not in registry.stderr_text()


def _screenshot(browser: Any, path: Path) -> None:
    """The whole page, as tall as it is (up to 2400 px), as a PNG at ``path``."""
    height = browser.execute_script(
        "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight"
    )
    browser.set_window_size(1200, max(600, min(int(height), 2400)))
    try:
        assert browser.save_screenshot(str(path))
    finally:
        browser.set_window_size(1200, 1000)
    assert path.read_bytes().startswith(b"\x89PNG")
    print(f"screenshot: {path}")


def test_screenshots_of_the_box_and_artifact_pages(browser: Any, site: dict[str, Any]) -> None:
    registry: RegistryProcess = site["registry"]
    browser.delete_all_cookies()
    _open(browser, registry, "/acme/web")
    _screenshot(browser, registry.data.parent / "box-page.png")  # the test's pytest tmp dir
    wanted = os.environ.get("ATLAS_PAGES_SCREENSHOT")  # e.g. docs/box-page.png, to refresh it
    if wanted:
        _screenshot(browser, Path(wanted))
    _open(browser, registry, "/acme/hostile/amazon.ami")
    _screenshot(browser, registry.data.parent / "artifact-page.png")
    _sign_in(browser, registry, site["alice"])
    _screenshot(browser, registry.data.parent / "home-page.png")
    _sign_out(browser)


@pytest.mark.parametrize("path", ["/", "/acme", "/acme/hostile", "/acme/hostile/amazon.ami"])
def test_hostile_values_show_as_text_and_never_run(
    browser: Any, site: dict[str, Any], path: str
) -> None:
    from selenium.webdriver.common.by import By

    registry: RegistryProcess = site["registry"]
    browser.delete_all_cookies()
    _open(browser, registry, path)
    for element in browser.find_elements(By.CSS_SELECTOR, "main *"):
        element.location_once_scrolled_into_view  # noqa: B018 (hover paths, lazy images)
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    # Escaped, not merely stopped by the CSP: no element came out of the values.
    assert browser.find_elements(By.CSS_SELECTOR, "main script, main img, main b") == []
    assert browser.find_elements(By.CSS_SELECTOR, "a[href^='javascript' i]") == []
    assert browser.find_elements(By.CSS_SELECTOR, "[onerror], [onmouseover]") == []
    text = _text(browser)
    expected = {
        "/": [SCRIPT],
        "/acme": [SCRIPT],
        "/acme/hostile": [SCRIPT, HOSTILE_DESCRIPTION, f"{IMG} {QUOTES}"],
        "/acme/hostile/amazon.ami": [HOSTILE_ID, HOSTILE_KEY, HOSTILE_VALUE],
    }[path]
    for value in expected:
        assert value in text, value


def test_sign_in_shows_private_boxes_and_sign_out_ends_the_session(
    browser: Any, site: dict[str, Any]
) -> None:
    registry: RegistryProcess = site["registry"]
    token: str = site["alice"]
    browser.delete_all_cookies()
    _sign_in(browser, registry, token)
    assert "Signed in as alice" in _text(browser)
    assert "acme/secret" in _text(browser)
    assert token not in browser.page_source
    cookies = {c["name"]: c for c in browser.get_cookies()}
    session = cookies["atlas_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert token not in session["value"]
    assert "atlas_session" not in browser.execute_script("return document.cookie")
    _click(browser, "acme/secret")
    assert "Not found" not in _text(browser)
    download = _download_href(browser)
    jar = {"atlas_session": session["value"]}
    assert requests.get(download, cookies=jar, timeout=TIMEOUT).content == site["secret"]
    assert requests.get(download, timeout=TIMEOUT).status_code == 401
    _sign_out(browser)
    assert "acme/secret" not in _text(browser)
    _assert_hidden(browser, registry, site)
    # Ended on the server: the old cookie, sent again, signs nobody in.
    replayed = requests.get(
        registry.url + "/", cookies=jar, headers={"Accept": BROWSER_ACCEPT}, timeout=TIMEOUT
    )
    assert "acme/secret" not in replayed.text and "Sign in" in replayed.text
    assert requests.get(download, cookies=jar, timeout=TIMEOUT).status_code == 401
    assert token not in registry.stderr_text()


def _assert_hidden(browser: Any, registry: RegistryProcess, site: dict[str, Any]) -> None:
    """The private box's page, to the anonymous: a sign-in hint, nothing of the box."""
    _open(browser, registry, "/acme/secret")
    page = _text(browser)
    assert "Sign in needed" in page
    assert hashlib.sha256(site["secret"]).hexdigest() not in page
    assert "Versions" not in page


def _download_href(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.LINK_TEXT, "Download").get_attribute("href"))


def test_a_revoked_tokens_session_sees_nothing_private(browser: Any, site: dict[str, Any]) -> None:
    registry: RegistryProcess = site["registry"]
    token = new_token(registry, "alice")
    browser.delete_all_cookies()
    _sign_in(browser, registry, token)
    assert "acme/secret" in _text(browser)
    listed = admin(registry, "token", "list", "--user", "alice", "--json").stdout
    import json

    newest = max(json.loads(listed), key=lambda t: (t["created"], t["id"]))
    admin(registry, "token", "revoke", newest["id"])
    _open(browser, registry, "/")
    assert "acme/secret" not in _text(browser)
    assert "Sign in" in _text(browser)
    _assert_hidden(browser, registry, site)


def test_a_wrong_token_is_refused_without_repeating_it(browser: Any, site: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    registry: RegistryProcess = site["registry"]
    browser.delete_all_cookies()
    wrong = "atlas_not-a-real-token-0123456789"
    _open(browser, registry, "/-/sign-in")
    browser.find_element(By.ID, "token").send_keys(wrong)
    _navigate(browser, browser.find_element(By.CSS_SELECTOR, "form.sign-in button"))
    assert "invalid token" in _text(browser)
    assert wrong not in browser.page_source
    assert browser.get_cookies() == []


def test_sign_in_from_another_site_is_refused(site: dict[str, Any]) -> None:
    registry: RegistryProcess = site["registry"]
    form = {"token": site["alice"]}
    for origin in ("http://evil.example", None):
        headers = {"Accept": BROWSER_ACCEPT, **({"Origin": origin} if origin else {})}
        refused = requests.post(
            registry.url + "/-/sign-in",
            data=form,
            headers=headers,
            timeout=TIMEOUT,
            allow_redirects=False,
        )
        assert refused.status_code == 403
        assert "Set-Cookie" not in refused.headers


def test_vagrant_and_api_clients_keep_the_catalog(site: dict[str, Any]) -> None:
    registry: RegistryProcess = site["registry"]
    catalog = api(registry, "GET", "/acme/web", headers={"Accept": "application/json"})
    assert catalog.headers["Content-Type"] == "application/json"
    assert [v["version"] for v in catalog.json()["versions"]] == ["1.2.0"]
    head = requests.head(registry.url + "/acme/web", timeout=TIMEOUT)
    assert head.headers["Content-Type"] == "application/json"
    page = requests.get(
        registry.url + "/acme/web", headers={"Accept": BROWSER_ACCEPT}, timeout=TIMEOUT
    )
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    style = requests.get(registry.url + "/-/style.css", timeout=TIMEOUT)
    assert style.headers["Content-Type"] == "text/css; charset=utf-8"
    icon = requests.get(registry.url + "/-/icon.svg", timeout=TIMEOUT)
    assert icon.headers["Content-Type"] == "image/svg+xml" and b"<script" not in icon.content
