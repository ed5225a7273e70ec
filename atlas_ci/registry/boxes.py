"""The box service: boxes, their named versions, providers, releases and files, for every door.

A **box** is ``user/name``: the Atlas artifact of that name (the ``artifacts`` row is the box;
creating a box creates that artifact, and every artifact is a box, with empty descriptions
until they are set). Its visibility is the artifact's (``atlas-ci registry artifact
set-visibility``; a box is private unless made public) and access is :func:`.policy.decide`'s:
reading needs the box to be public or a role in its namespace, writing (creating, updating,
releasing, revoking, deleting, uploading) a write role and a token that is not read-only.

A box has **versions** named by the publisher, checked and ordered as Vagrant does
(:mod:`.box_version`): ``1.10.0`` is newer than ``1.9.0``, ``1.0.0.rc1`` older than
``1.0.0``; two names Vagrant takes for the same version (``1.0`` and ``1.0.0``) are one
version. A version is ``unreleased`` when created, ``active`` once released, ``revoked``
once revoked (and may be released again). Each version has **providers** by name
(``virtualbox``), each with one hosted file (sha256, size) or an external ``url``.

Every operation takes the caller's :class:`~.identity.Identity` first and raises (all are
:class:`~.storage.StorageError`; :func:`status_of` gives the HTTP status a door answers):

- :class:`~.box_model.Refused` -- the policy's refusal: 401 anonymous, 403 no write access or
  a read-only token, 404 a private box to an outsider (as if it did not exist);
- :class:`~.storage.NotFound` (404) -- no such box, version, provider or upload URL;
- :class:`~.storage.Invalid` (422) -- a bad name, version string, provider name, url,
  checksum or search parameter; a release of a version without an installable provider;
- :class:`~.box_model.Exists` (422) -- the box, version (or one Vagrant orders equal) or
  provider is already there;
- :class:`~.box_model.FileConflict` (409) -- an upload URL already used, a callback replayed
  or for another provider, a different file for a released provider;
- :class:`~.storage.OutOfSpace` (507), :class:`~.storage.Busy` (503) -- as storage raises them.

**Files.** A provider's file arrives through an upload URL: :meth:`Boxes.upload_target`
hands out a per-provider secret (stored hashed and sealed, like an Atlas version's, and
handed out again while it is unused), :meth:`Boxes.begin_upload` and
:meth:`Boxes.finish_upload` stream the PUT into ``files/`` with its sha256 (the same
:class:`~.storage.Upload` machinery the Atlas upload uses). A PUT cut short leaves the
provider as it was (``pending`` if it had no file). A used secret is spent: it cannot be
replayed onto this or another provider. The upload URL carries the write access of the
token it was handed to, as that access is now (revoking the token ends it).

**Re-uploads.** ``vagrant cloud publish`` uploads again when a released version is published
again, so a provider's file may be uploaded again: while its version is unreleased (or
revoked) the new file replaces the old one; once its version is ``active`` the same bytes
(same sha256) are accepted and change nothing, and a different file is refused with
:class:`~.box_model.FileConflict` (409): what Vagrant users installed under that version and
checksum must stay what it is (publish a new version instead, or revoke first).

**Deleting** a box, version or provider removes its rows and then the files that no other
record uses. A provider that came from an Atlas upload serves that Atlas version's file,
which the Atlas API keeps (it has no delete): that file is not removed. Deleting a box
whose artifact still holds Atlas versions removes the box's versions, providers and
descriptions; the artifact stays, as the Atlas API knows it.

**Atlas uploads** land here too (:meth:`Boxes.atlas_version_hook`): an Atlas ``vagrant.box``
version with a file and a ``provider`` metadata entry becomes provider ``provider`` of box
version ``metadata["version"]`` (or ``"<N>"``, its Atlas number, without one), released at
once; its file is the Atlas version's file once that upload finishes.
"""

from __future__ import annotations

from collections.abc import Callable

from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.box_model import (
    Box,
    BoxFile,
    BoxProvider,
    BoxQuery,
    BoxVersion,
    Exists,
    FileConflict,
    Refused,
    UploadTarget,
)
from atlas_ci.registry.database import Connection
from atlas_ci.registry.identity import Identity
from atlas_ci.registry.storage import (
    Busy,
    Invalid,
    NotFound,
    OutOfSpace,
    Storage,
    StorageError,
    Upload,
    Version,
)

__all__ = [
    "Box",
    "BoxFile",
    "BoxProvider",
    "BoxQuery",
    "BoxVersion",
    "Boxes",
    "Exists",
    "FileConflict",
    "Invalid",
    "NotFound",
    "ProviderUpload",
    "Refused",
    "UploadTarget",
    "status_of",
]


def status_of(exc: StorageError) -> int:
    """The HTTP status a door answers for an error this service raised."""
    if isinstance(exc, Refused):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, FileConflict):
        return 409
    if isinstance(exc, OutOfSpace):
        return 507
    if isinstance(exc, Busy):
        return 503
    return 422  # Invalid, Exists, and any other rule broken by the request


class ProviderUpload(Upload):
    """A file arriving for one provider (see :meth:`Boxes.begin_upload`)."""


class Boxes:
    """The box service over one :class:`Storage` (and its :class:`Accounts`)."""

    def __init__(self, storage: Storage, accounts: Accounts) -> None:
        self.storage = storage
        self.accounts = accounts

    # -- boxes ---------------------------------------------------------------------------------

    def get_box(self, identity: Identity, user: str, name: str) -> Box:
        """The box ``user/name`` (read)."""
        raise NotImplementedError

    def create_box(
        self,
        identity: Identity,
        user: str,
        name: str,
        *,
        short_description: str = "",
        description: str = "",
        private: bool | None = None,
    ) -> Box:
        """Create box (and artifact) ``user/name`` (write). ``private`` None: private, as
        every new artifact. Invalid for a name that is not a valid namespace or box name;
        Exists when the artifact is there."""
        raise NotImplementedError

    def update_box(
        self,
        identity: Identity,
        user: str,
        name: str,
        *,
        short_description: str | None = None,
        description: str | None = None,
        private: bool | None = None,
    ) -> Box:
        """Change the fields given (None: unchanged) (write)."""
        raise NotImplementedError

    def delete_box(self, identity: Identity, user: str, name: str) -> None:
        """Delete the box, its versions and providers and the files only they used (write).
        The artifact row goes too unless it holds Atlas versions (see the module doc)."""
        raise NotImplementedError

    def list_boxes(self, identity: Identity, owner: str) -> list[Box]:
        """The boxes of user or organization ``owner`` that ``identity`` may read, by name.
        NotFound when ``owner`` is neither a namespace nor holds any artifact."""
        raise NotImplementedError

    def search(self, identity: Identity, query: BoxQuery) -> list[Box]:
        """Boxes matching ``query`` that ``identity`` may read (never a private box to an
        outsider); Invalid for a limit outside 1..100, a page below 1, a bad sort or order."""
        raise NotImplementedError

    def count_download(self, user: str, name: str) -> None:
        """Count one download of a file of box ``user/name`` (the caller decided access)."""
        raise NotImplementedError

    # -- versions ------------------------------------------------------------------------------

    def versions(self, identity: Identity, user: str, name: str) -> list[BoxVersion]:
        """Every version of the box, any status, newest first in Vagrant's order (read)."""
        raise NotImplementedError

    def current_version(self, identity: Identity, user: str, name: str) -> BoxVersion | None:
        """The newest active version, or None (read)."""
        raise NotImplementedError

    def catalog(self, identity: Identity, user: str, name: str, limit: int) -> list[BoxVersion]:
        """What Vagrant may install (read): the newest ``limit`` active versions, newest first,
        each with only its installable providers (a ready file or a url), versions without
        one left out."""
        raise NotImplementedError

    def get_version(self, identity: Identity, user: str, name: str, version: str) -> BoxVersion:
        """One version by its publisher's name (or one Vagrant orders equal) (read)."""
        raise NotImplementedError

    def create_version(
        self, identity: Identity, user: str, name: str, version: str, *, description: str = ""
    ) -> BoxVersion:
        """A new ``unreleased`` version (write); Invalid version string, Exists."""
        raise NotImplementedError

    def update_version(
        self,
        identity: Identity,
        user: str,
        name: str,
        version: str,
        *,
        new_version: str | None = None,
        description: str | None = None,
    ) -> BoxVersion:
        """Rename (only while unreleased: Invalid otherwise) or describe a version (write)."""
        raise NotImplementedError

    def delete_version(self, identity: Identity, user: str, name: str, version: str) -> None:
        """Delete a version, its providers and the files only they used (write)."""
        raise NotImplementedError

    def release_version(self, identity: Identity, user: str, name: str, version: str) -> BoxVersion:
        """Make a version ``active`` (write). Invalid when no provider has a ready file or a
        url, or when it is already active (the message says "already been released", which
        Packer takes for success)."""
        raise NotImplementedError

    def revoke_version(self, identity: Identity, user: str, name: str, version: str) -> BoxVersion:
        """Make an active version ``revoked`` (write); Invalid unless it is active."""
        raise NotImplementedError

    # -- providers -----------------------------------------------------------------------------

    def get_provider(
        self, identity: Identity, user: str, name: str, version: str, provider: str
    ) -> BoxProvider:
        """One provider of a version (read)."""
        raise NotImplementedError

    def create_provider(
        self,
        identity: Identity,
        user: str,
        name: str,
        version: str,
        provider: str,
        *,
        url: str | None = None,
        checksum: str | None = None,
        checksum_type: str | None = None,
    ) -> BoxProvider:
        """Add provider ``provider`` to a version (write): Invalid name, url or checksum;
        Exists when the version has it already."""
        raise NotImplementedError

    def update_provider(
        self,
        identity: Identity,
        user: str,
        name: str,
        version: str,
        provider: str,
        *,
        new_name: str | None = None,
        url: str | None = None,
        checksum: str | None = None,
        checksum_type: str | None = None,
    ) -> BoxProvider:
        """Change the fields given (None: unchanged; ``url=""`` removes the url) (write)."""
        raise NotImplementedError

    def delete_provider(
        self, identity: Identity, user: str, name: str, version: str, provider: str
    ) -> None:
        """Delete a provider and its file unless another record uses it (write)."""
        raise NotImplementedError

    # -- files ---------------------------------------------------------------------------------

    def upload_target(
        self, identity: Identity, user: str, name: str, version: str, provider: str
    ) -> UploadTarget:
        """The provider's upload secret and callback id (write); the same ones again until a
        file arrives through them."""
        raise NotImplementedError

    def begin_upload(self, secret: str) -> ProviderUpload:
        """Start receiving the file behind upload ``secret``: NotFound for an unknown or spent
        secret, Refused (403) when the token it was handed to lost its write access."""
        raise NotImplementedError

    def finish_upload(self, upload: ProviderUpload) -> BoxProvider:
        """Make a whole upload the provider's file (see "Re-uploads" in the module doc); the
        secret is spent. The temp file never outlives the call."""
        raise NotImplementedError

    def complete_upload(
        self, identity: Identity, user: str, name: str, version: str, provider: str, callback: str
    ) -> BoxProvider:
        """The direct upload's callback (write): FileConflict when ``callback`` was already
        used or belongs to another provider, Invalid when no file has arrived."""
        raise NotImplementedError

    def open_file(
        self, identity: Identity, user: str, name: str, version: str, provider: str
    ) -> BoxFile:
        """The provider's hosted file to send (read; any status: unreleased and revoked
        versions' files stay downloadable to readers). NotFound without a ready file."""
        raise NotImplementedError

    # -- Atlas uploads -------------------------------------------------------------------------

    def atlas_version_hook(
        self, metadata: dict[str, str] | None
    ) -> Callable[[Connection, Version], None] | None:
        """For an Atlas ``vagrant.box`` version request with ``metadata``: checks made before
        anything is stored (Invalid: a bad ``version`` or ``provider``) and the step that
        lands the version in the box model inside the storage's create_version transaction
        (Exists: the box version has that provider already). None when nothing lands."""
        raise NotImplementedError
