"""The web pages as HTML: templates (``templates/``) rendered with every value escaped.

A representation, like :mod:`.wire` and :mod:`.vagrant`: records in, bytes out, no storage and
no access decision. Jinja2 renders with autoescaping on for every template, so a name, a
description, a metadata key or value or an artifact id is always text, never markup; only the
templates themselves write tags. Links made of user data go through :func:`safe_href`: an
``http``/``https`` URL or nothing (a ``javascript:`` URL never becomes a link). Every page
carries :data:`SECURITY_HEADERS`: a Content-Security-Policy that allows no script at all (the
pages need none), only this registry's own stylesheet, and no framing.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).with_name("templates")
STYLESHEET = TEMPLATES / "style.css"
ICON = TEMPLATES / "icon.svg"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # A page may show private boxes: no shared cache keeps it.
    "Cache-Control": "no-store",
}


def path(*segments: object) -> str:
    """An absolute path on this registry, each segment escaped (a name may hold ``?`` or
    ``#``): ``path("acme", "web")`` is ``/acme/web``."""
    return "/" + "/".join(urllib.parse.quote(str(s), safe="") for s in segments)


def safe_href(url: str | None) -> str | None:
    """``url`` if it is an absolute ``http`` or ``https`` URL (then fit for an ``href``), else
    None: a ``javascript:``, ``data:`` or relative value from a user is shown, never linked."""
    if not url or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return None
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme.lower() not in ("http", "https") or not parsed.netloc:
        return None
    return url


def human_size(size: int | None) -> str:
    """``1.5 MiB`` and the like; an em dash for no size."""
    if size is None:
        return "\u2014"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def when(stamp: str) -> str:
    """A stored timestamp (``2026-12-07T19:34:05.123Z``) as ``2026-12-07 19:34 UTC``."""
    if len(stamp) >= 16 and stamp[10] == "T":
        return f"{stamp[:10]} {stamp[11:16]} UTC"
    return stamp


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    # Every template, whatever its name: no page is ever rendered without escaping.
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.globals.update(path=path, safe_href=safe_href, human_size=human_size, when=when)


def render(template: str, **context: object) -> bytes:
    """The page ``template`` (a file in ``templates/``) rendered with ``context``, UTF-8."""
    return _ENV.get_template(template).render(**context).encode("utf-8")


def stylesheet() -> bytes:
    """The one stylesheet every page links (``/-/style.css``)."""
    return STYLESHEET.read_bytes()


def icon() -> bytes:
    """The pages' icon (``/-/icon.svg``): linked, so a browser asks for no ``/favicon.ico``."""
    return ICON.read_bytes()
