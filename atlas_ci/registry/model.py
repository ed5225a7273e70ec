"""The registry's records and the rules they break: what storage, the front doors and the
representations (:mod:`.wire`) share.

Plain frozen dataclasses and exceptions, no I/O: storage makes them from rows, a representation
makes JSON of them, a front door maps a :class:`StorageError` onto an HTTP status.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

MAX_NAME_LENGTH = 255
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

State = Literal["pending", "ready"]
Selector = int | Literal["latest", "any"]
"""A ``version`` or ``build`` choice in a search: a number, the newest, or any."""


class StorageError(Exception):
    """A storage rule was broken; the message is safe to show to a client."""


class NotFound(StorageError):
    """The artifact, version or upload does not exist."""


class Conflict(StorageError):
    """The request clashes with what is stored (artifact exists, file already uploaded)."""


class Invalid(StorageError):
    """A value cannot be stored (bad name, out-of-range integer, bad metadata)."""


class KeyReused(Invalid):
    """An idempotency key came back with a different request than the one it was first sent
    with."""


class OutOfSpace(StorageError):
    """The disk (or the database) is full; nothing was changed."""


class Busy(StorageError):
    """The database stayed locked by another writer for longer than the wait allows."""


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One ``user/name`` artifact."""

    user: str
    name: str
    created: str

    @property
    def tag(self) -> str:
        return f"{self.user}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Version:
    """One version of an artifact type, as stored."""

    pk: int
    user: str
    name: str
    type: str
    version: int
    id: str
    build_id: int
    compile_id: int
    metadata: dict[str, str] | None
    file: bool
    state: State
    size: int | None
    sha256: str | None
    created: str

    @property
    def slug(self) -> str:
        return f"{self.user}/{self.name}/{self.type}/{self.version}"


@dataclasses.dataclass(frozen=True)
class MetadataFilter:
    """``metadata.N.key`` with an optional ``metadata.N.value`` (None: any value)."""

    key: str
    value: str | None = None

    def matches(self, metadata: dict[str, str] | None) -> bool:
        if metadata is None or self.key not in metadata:
            return False
        return self.value is None or metadata[self.key] == self.value


@dataclasses.dataclass(frozen=True)
class Search:
    """A version search: ``version`` and ``build`` are ``"latest"``, ``"any"`` or a number."""

    version: Selector = "latest"
    build: Selector = "any"
    metadata: tuple[MetadataFilter, ...] = ()
    include_pending: bool = False
    """Also pending versions (``latest`` is then the highest of either state)."""


def validate_name(kind: str, value: str) -> None:
    """Refuse names that cannot be one path segment: empty, ``/``, control characters, dots."""
    if not value:
        raise Invalid(f"{kind} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise Invalid(f"{kind} is longer than {MAX_NAME_LENGTH} characters")
    if "/" in value or value in (".", ".."):
        raise Invalid(f"{kind} {value!r} cannot be a path segment")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise Invalid(f"{kind} must not contain control characters")
