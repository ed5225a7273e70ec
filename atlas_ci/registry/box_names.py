"""What a box's names and fields may hold: box and provider names, urls, checksums, texts.

Pure checks, each returning the problem as a sentence (None: fine) or raising
:class:`~.storage.Invalid` with a message that quotes the value safely and says what to send.
"""

from __future__ import annotations

import re
import urllib.parse

from atlas_ci.registry.box_tables import provider_problem
from atlas_ci.registry.model import Invalid

MAX_BOX_NAME = 128
MAX_URL = 2048
MAX_SHORT_DESCRIPTION = 1024
MAX_DESCRIPTION = 64 << 10
CHECKSUM_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}
"""The checksum types Vagrant checks a box download with, and their hex lengths."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _shown(value: str) -> str:
    """A client's value, quoted for a message: printable, and cut when long."""
    text = value if value.isprintable() else ascii(value)
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def check_provider(name: str) -> None:
    problem = provider_problem(name)
    if problem is not None:
        raise Invalid(problem)


def check_box_name(name: str) -> None:
    """A box name as Vagrant Cloud has them: letters, digits, ``_``, ``.``, ``-``."""
    if not name or len(name) > MAX_BOX_NAME or not _NAME.fullmatch(name) or name in (".", ".."):
        raise Invalid(
            f"box name {_shown(name)} is not valid: use 1 to {MAX_BOX_NAME} letters, digits, "
            "'_', '.' and '-', starting with a letter or digit"
        )


def check_url(url: str) -> None:
    """An external box url: absolute http(s), printable, bounded."""
    if len(url) > MAX_URL:
        raise Invalid(f"url is longer than {MAX_URL} characters")
    parts = urllib.parse.urlsplit(url) if url.isprintable() and " " not in url else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(f"url {_shown(url)} is not an absolute http:// or https:// URL")


def check_checksum(checksum: str | None, checksum_type: str | None) -> None:
    """Both or neither; a type Vagrant knows and a hex digest of its length."""
    if checksum is None and checksum_type is None:
        return
    if checksum is None or checksum_type is None:
        raise Invalid("send checksum and checksum_type together (e.g. sha256 and its hex digest)")
    length = CHECKSUM_LENGTHS.get(checksum_type)
    if length is None:
        raise Invalid(
            f"checksum_type {_shown(checksum_type)} is not one of {', '.join(CHECKSUM_LENGTHS)}"
        )
    if len(checksum) != length or not re.fullmatch(r"[0-9a-fA-F]+", checksum):
        raise Invalid(f"checksum is not a {checksum_type} digest ({length} hex digits)")


def check_text(field: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise Invalid(f"{field} is longer than {limit} characters")
