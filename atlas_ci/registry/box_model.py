"""The box model's record types and errors: boxes, their named versions and providers.

Plain frozen dataclasses, no I/O: :mod:`.box_store` makes them from rows, :mod:`.boxes` hands
them to the front doors, a representation makes JSON of them. See :mod:`.boxes` for what each
operation does and raises.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from atlas_ci.registry.model import Conflict, StorageError

Status = Literal["unreleased", "active", "revoked"]
STATUSES: tuple[Status, ...] = ("unreleased", "active", "revoked")
FileState = Literal["none", "pending", "ready"]
"""A provider's hosted file: ``none`` (never uploaded, or an external ``url`` only),
``pending`` (an upload was handed out or cut short) or ``ready``."""
Sort = Literal["downloads", "created", "updated"]
Order = Literal["desc", "asc"]


class Exists(Conflict):
    """What is being created is already there (a box, a version, a provider of that name):
    Vagrant Cloud answers 422."""


class FileConflict(Conflict):
    """The file cannot be taken: a different file for a released provider, an upload URL
    already used, a callback replayed or for another upload (409)."""


class Refused(StorageError):
    """The identity may not do this: ``status`` is the policy's (401 anonymous, 403 no write
    access, 404 a private box to an outsider) and the message is safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Box:
    """A box ``user/name``: the Atlas artifact of that name, with the box's own fields."""

    user: str
    name: str
    private: bool
    short_description: str
    description: str
    downloads: int
    created: str
    updated: str

    @property
    def tag(self) -> str:
        return f"{self.user}/{self.name}"


@dataclasses.dataclass(frozen=True)
class BoxProvider:
    """One provider of a box version: a hosted file (sha256, size) and/or an external url.

    ``checksum``/``checksum_type`` are what the publisher declared; ``sha256`` is what the
    registry computed of the hosted file (None until it is ``ready``).
    """

    pk: int
    name: str
    url: str | None
    checksum: str | None
    checksum_type: str | None
    file_state: FileState
    size: int | None
    sha256: str | None
    atlas_version: int | None
    """The Atlas ``vagrant.box`` version number whose file this provider serves, if it came
    from an Atlas upload (its file is that version's: the Atlas file URL serves it too)."""
    created: str
    updated: str

    @property
    def hosted(self) -> bool:
        """A file on this registry (ready): what ``hosted`` means to Vagrant Cloud."""
        return self.file_state == "ready"

    @property
    def installable(self) -> bool:
        """Vagrant can install it: a ready file or an external url."""
        return self.hosted or bool(self.url)


@dataclasses.dataclass(frozen=True)
class BoxVersion:
    """A version of a box named by its publisher (``1.2.0``), with its providers by name."""

    pk: int
    user: str
    name: str
    version: str
    status: Status
    description: str
    created: str
    updated: str
    providers: tuple[BoxProvider, ...]

    def provider(self, name: str) -> BoxProvider | None:
        return next((p for p in self.providers if p.name == name), None)


@dataclasses.dataclass(frozen=True)
class BoxQuery:
    """A box search: words in ``q`` (user, name or short description), only boxes with an
    active version of ``provider``, sorted and paged (``page`` counts from 1)."""

    q: str = ""
    provider: str | None = None
    sort: Sort = "downloads"
    order: Order = "desc"
    limit: int = 10
    page: int = 1


@dataclasses.dataclass(frozen=True)
class UploadTarget:
    """Where a provider's file goes: ``secret`` makes the PUT path (``/binstore/<secret>``
    style; the secret is the credential) and ``callback`` the direct upload's callback id,
    which the callback path carries (clients drop its query string)."""

    secret: str
    callback: str


@dataclasses.dataclass(frozen=True)
class BoxFile:
    """A provider's hosted file, ready to send: where it is, its size and sha256."""

    path: Path
    size: int
    sha256: str
