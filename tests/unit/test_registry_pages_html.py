"""The web pages' representation: escaping, which URLs may be links, the security headers."""

from __future__ import annotations

import pytest

from atlas_ci.registry import pages_html
from atlas_ci.registry.box_model import Box


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("https://boxes.example/web.box", True),
        ("http://10.0.0.1:8080/a?b=c", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("vbscript:msgbox", False),
        ("//evil.example/x", False),
        ("/relative", False),
        ("https:///no-host", False),
        ("", False),
        (None, False),
    ],
)
def test_only_absolute_http_urls_become_links(url: str | None, linked: bool) -> None:
    assert pages_html.safe_href(url) == (url if linked else None)


def test_every_user_value_is_escaped_in_a_page() -> None:
    hostile = "<script>x()</script>\"'&"
    box = Box(hostile, hostile, False, hostile, hostile, 0, "2026-12-07T19:00:00Z", "x")
    page = pages_html.render(
        "namespace.html", viewer=hostile, owner=hostile, kind="user", boxes=[box], more=0
    ).decode()
    assert "<script>" not in page
    assert "&lt;script&gt;x()&lt;/script&gt;&#34;&#39;&amp;" in page
    # A name is one escaped path segment in a link: no way out of the attribute or the path.
    assert 'href="/%3Cscript%3Ex%28%29%3C%2Fscript%3E%22%27%26/' in page


def test_the_policy_allows_no_script_and_no_framing() -> None:
    csp = pages_html.SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # so default-src 'none' applies to scripts
    assert "frame-ancestors 'none'" in csp
    assert pages_html.SECURITY_HEADERS["Cache-Control"] == "no-store"


def test_sizes_and_times_read_as_a_person_reads_them() -> None:
    assert pages_html.human_size(None) == "\u2014"
    assert pages_html.human_size(17) == "17 B"
    assert pages_html.human_size(3 * 1024 * 1024 // 2) == "1.5 MiB"
    assert pages_html.when("2026-12-07T19:34:05.123Z") == "2026-12-07 19:34 UTC"
