"""The request shapes of the Vagrant Cloud API as Packer 1.6.6 and Vagrant 2.3.4 send them
(``shared/docs/vagrant-cloud-wire.md`` section 3): bodies and the search query in, small frozen
records out. Pure functions; what breaks the contract raises :class:`~.wire.BadRequest`.

Both clients' bodies are accepted as they come: a box is sent flat (``{"username", "name",
...}``) by Vagrant, and as ``{"box": {...}}`` by older tools; a version or provider wrapped in
``{"version": {...}}`` / ``{"provider": {...}}``. Keys a client sends that the registry does not
keep are ignored, as Vagrant Cloud ignored them; a key of the wrong type is a 422 naming it.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from atlas_ci.registry.box_model import BoxQuery, Order, Sort
from atlas_ci.registry.wire import BadRequest

MAX_DESCRIPTION = 64 << 10
"""The longest description kept (characters): a box page, not a document store."""
MAX_SEARCH_LIMIT = 100
SORTS: tuple[Sort, ...] = ("downloads", "created", "updated")
ORDERS: tuple[Order, ...] = ("desc", "asc")


@dataclasses.dataclass(frozen=True)
class BoxFields:
    """What a box create (``username`` and ``name`` set) or update carries; None: unchanged."""

    username: str | None = None
    name: str | None = None
    short_description: str | None = None
    description: str | None = None
    is_private: bool | None = None


@dataclasses.dataclass(frozen=True)
class VersionFields:
    """A version create (``version`` set) or update; None: unchanged."""

    version: str | None = None
    description: str | None = None


@dataclasses.dataclass(frozen=True)
class ProviderFields:
    """A provider create (``name`` set) or update; None: unchanged. ``url`` "" clears it."""

    name: str | None = None
    url: str | None = None
    checksum: str | None = None
    checksum_type: str | None = None


def _object(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object")
    return value


def _body(body: object, wrapper: str) -> dict[str, object]:
    """The object under ``wrapper`` when the body has one, else the body itself (flat)."""
    outer = _object({} if body is None else body, "the body")
    inner = outer.get(wrapper)
    return _object(inner, f'"{wrapper}"') if isinstance(inner, dict) else outer


def _text(fields: dict[str, object], key: str, where: str, limit: int = 255) -> str | None:
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{key} must be a string")
    if len(value) > limit:
        raise BadRequest(f"{where}.{key} is longer than {limit} characters")
    return value


def parse_box(body: object) -> BoxFields:
    """``POST /boxes`` or ``PUT /box/{u}/{n}``: flat or under ``"box"``."""
    fields = _body(body, "box")
    private = fields.get("is_private", fields.get("private"))
    if private is not None and not isinstance(private, bool):
        raise BadRequest("box.is_private must be true or false")
    return BoxFields(
        username=_text(fields, "username", "box"),
        name=_text(fields, "name", "box"),
        short_description=_text(fields, "short_description", "box", 1000),
        description=_text(fields, "description", "box", MAX_DESCRIPTION),
        is_private=private,
    )


def parse_version(body: object) -> VersionFields:
    """``POST .../versions`` or ``PUT .../version/{v}``: ``{"version": {"version", ...}}``."""
    outer = _object({} if body is None else body, "the body")
    inner = outer.get("version")
    fields = _object(inner, '"version"') if isinstance(inner, dict) else outer
    number = fields.get("version")
    if number is not None and not isinstance(number, str):
        raise BadRequest('version.version must be a string such as "1.2.0"')
    return VersionFields(
        version=number, description=_text(fields, "description", "version", MAX_DESCRIPTION)
    )


def parse_provider(body: object) -> ProviderFields:
    """``POST .../providers`` or ``PUT .../provider/{p}``: ``{"provider": {...}}``."""
    fields = _body(body, "provider")
    return ProviderFields(
        name=_text(fields, "name", "provider"),
        url=_text(fields, "url", "provider", 2048),
        checksum=_text(fields, "checksum", "provider", 256),
        checksum_type=_text(fields, "checksum_type", "provider", 16),
    )


def _number(params: dict[str, str], key: str, default: int, top: int) -> int:
    raw = params.get(key, "")
    if raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 1 <= int(raw) <= top:
        raise BadRequest(f"{key} must be a whole number from 1 to {top}, not {raw[:40]!r}", 400)
    return int(raw)


def parse_search(query: str) -> BoxQuery:
    """``q``, ``provider``, ``sort`` (downloads, created, updated), ``order`` (desc, asc),
    ``limit`` (1 to 100) and ``page``; unknown parameters (``access_token``) are ignored."""
    try:
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8", 400) from None
    if "\x00" in params.get("q", ""):
        # PostgreSQL cannot compare text holding a NUL: refused alike on both backends.
        raise BadRequest("q holds a NUL character (%00); remove it", 400)
    sort = next((s for s in SORTS if s == (params.get("sort") or "downloads")), None)
    if sort is None:
        raise BadRequest(
            f"sort must be one of {', '.join(SORTS)}, not {params['sort'][:40]!r}", 400
        )
    order = next((o for o in ORDERS if o == (params.get("order") or "desc")), None)
    if order is None:
        raise BadRequest(f"order must be desc or asc, not {params['order'][:40]!r}", 400)
    return BoxQuery(
        q=params.get("q", "")[:255],
        provider=params.get("provider") or None,
        sort=sort,
        order=order,
        limit=_number(params, "limit", 25, MAX_SEARCH_LIMIT),
        page=_number(params, "page", 1, 1_000_000),
    )
