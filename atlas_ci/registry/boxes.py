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

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from atlas_ci.registry import box_files, box_names, box_store, box_version, policy
from atlas_ci.registry.accounts import Accounts, Visibility, validate_namespace
from atlas_ci.registry.box_files import ProviderUpload
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
from atlas_ci.registry.box_tables import provider_problem
from atlas_ci.registry.database import Connection
from atlas_ci.registry.identity import Identity, Unauthenticated, grant_holder
from atlas_ci.registry.model import (
    Busy,
    Invalid,
    NotFound,
    OutOfSpace,
    StorageError,
    Version,
)
from atlas_ci.registry.rows import now
from atlas_ci.registry.sealing import hash_secret
from atlas_ci.registry.storage import Storage

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

MAX_LIMIT = 100
MAX_PAGE = 10_000
MAX_QUERY = 256
_SORTS = {
    "downloads": "COALESCE(d.downloads, 0)",
    "created": "a.created",
    "updated": "COALESCE(d.updated, a.created)",
}


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


def checked_version(version: str, field: str = "") -> str:
    """``version`` if Vagrant accepts it as a box version; :class:`Invalid` otherwise, its
    message starting with ``field`` (``metadata``: where the client wrote it)."""
    try:
        box_version.check(version)
    except box_version.BadVersion as exc:
        raise Invalid(f"{field} {exc}" if field else str(exc)) from None
    return version


def _same_or_equal(asked: str, found: str) -> str:
    return found if asked == found else f"{found} (which Vagrant reads as {asked})"


class Boxes:
    """The box service over one :class:`Storage` (and its :class:`Accounts`)."""

    def __init__(self, storage: Storage, accounts: Accounts) -> None:
        self.storage = storage
        self.accounts = accounts
        # The data directory's sealing key (made by the storage when it opened): upload
        # secrets are kept sealed with it, as the Atlas versions' are.
        self._key = (storage.data_dir / "upload.key").read_bytes()

    # -- access and lookups --------------------------------------------------------------------

    def _decide(
        self, identity: Identity, operation: policy.Operation, user: str, name: str
    ) -> None:
        decide(self.accounts, identity, operation, user, name)

    @contextmanager
    def _reading(self, identity: Identity, user: str, name: str) -> Iterator[Connection]:
        """A connection, once ``identity`` may read the box and it exists."""
        self._decide(identity, "read", user, name)
        with self.storage.connection() as conn:
            _box(conn, user, name)
            yield conn

    @contextmanager
    def _writing(self, identity: Identity, user: str, name: str) -> Iterator[Connection]:
        """A write transaction holding the box's lock, once ``identity`` may write the box and
        it exists."""
        self._decide(identity, "write", user, name)
        with self.storage.transaction() as conn:
            conn.lock("box", user, name)
            _box(conn, user, name)
            yield conn

    def _free(self, blobs: list[str]) -> None:
        if blobs:
            with self.storage.connection() as conn:
                box_files.free(conn, self.storage.files_dir, blobs)

    # -- boxes ---------------------------------------------------------------------------------

    def get_box(self, identity: Identity, user: str, name: str) -> Box:
        """The box ``user/name`` (read)."""
        with self._reading(identity, user, name) as conn:
            return _box(conn, user, name)

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
        validate_namespace("namespace", user)
        box_names.check_box_name(name)
        _check_descriptions(short_description, description)
        self._decide(identity, "write", user, name)
        with self.storage.transaction() as conn:
            conn.lock("box", user, name)
            if box_store.get_box(conn, user, name) is not None:
                raise Exists(f"box {user}/{name} already exists")
            stamp = now()
            conn.execute(
                'INSERT INTO artifacts ("user", name, created) VALUES (?, ?, ?)',
                (user, name, stamp),
            )
            box_store.touch_box(conn, user, name, stamp, short_description, description)
            if private is False:
                _set_public(conn, user, name, True, stamp)
            return _box(conn, user, name)

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
        _check_descriptions(short_description, description)
        with self._writing(identity, user, name) as conn:
            stamp = now()
            box_store.touch_box(conn, user, name, stamp, short_description, description)
            if private is not None:
                _set_public(conn, user, name, not private, stamp)
            return _box(conn, user, name)

    def delete_box(self, identity: Identity, user: str, name: str) -> None:
        """Delete the box, its versions and providers and the files only they used (write).
        The artifact row goes too unless it holds Atlas versions (see the module doc)."""
        with self._writing(identity, user, name) as conn:
            blobs = box_store.delete_box(conn, user, name)
        self._free(blobs)

    def list_boxes(self, identity: Identity, owner: str) -> list[Box]:
        """The boxes of user or organization ``owner`` that ``identity`` may read, by name.
        NotFound when ``owner`` is neither a namespace nor holds any artifact (an
        administrator gets an empty list for any name)."""
        where, params = _readable(identity)
        with self.storage.connection() as conn:
            found = box_store.select_boxes(
                conn, 'a."user" = ? AND ' + where, [owner, *params], "a.name", 100_000, 0
            )
            exists = found or box_store.artifact_count(conn, owner)
        if not exists and not identity.admin and self.accounts.kind(owner) is None:
            raise NotFound(f"no user or organization named {owner!r}")
        return [box for box in found if _may_read(identity, box)]

    def search(self, identity: Identity, query: BoxQuery) -> list[Box]:
        """Boxes matching ``query`` that ``identity`` may read (never a private box to an
        outsider); Invalid for a limit outside 1..100, a page outside 1..10000, a bad sort,
        order or provider."""
        where, params = _readable(identity)
        clauses, values = _query_filter(query)
        order = f"{_SORTS[query.sort]} {'ASC' if query.order == 'asc' else 'DESC'}"
        with self.storage.connection() as conn:
            found = box_store.select_boxes(
                conn,
                " AND ".join([where, *clauses]),
                [*params, *values],
                order + ', a."user", a.name',
                query.limit,
                (query.page - 1) * query.limit,
            )
        return [box for box in found if _may_read(identity, box)]

    def count_download(self, user: str, name: str) -> None:
        """Count one download of a file of box ``user/name`` (the caller decided access)."""
        with self.storage.transaction() as conn:
            box_store.count_download(conn, user, name)

    # -- versions ------------------------------------------------------------------------------

    def versions(
        self, identity: Identity, user: str, name: str, limit: int | None = None
    ) -> list[BoxVersion]:
        """Every version of the box (the newest ``limit`` of them), any status, newest first in
        Vagrant's order (read)."""
        with self._reading(identity, user, name) as conn:
            return box_store.select_versions(conn, user, name, limit=-1 if limit is None else limit)

    def current_version(self, identity: Identity, user: str, name: str) -> BoxVersion | None:
        """The newest active version, or None (read)."""
        with self._reading(identity, user, name) as conn:
            found = box_store.select_versions(conn, user, name, "status = 'active'", 1)
        return found[0] if found else None

    def catalog(self, identity: Identity, user: str, name: str, limit: int) -> list[BoxVersion]:
        """What Vagrant may install (read): the newest ``limit`` active versions, newest first,
        each with only its installable providers (a ready file or a url), versions without
        one left out."""
        condition = "status = 'active' AND " + box_store.INSTALLABLE
        with self._reading(identity, user, name) as conn:
            found = box_store.select_versions(conn, user, name, condition, limit)
        return [
            dataclasses.replace(v, providers=tuple(p for p in v.providers if p.installable))
            for v in found
        ]

    def get_version(self, identity: Identity, user: str, name: str, version: str) -> BoxVersion:
        """One version by its publisher's name (or one Vagrant orders equal) (read)."""
        with self._reading(identity, user, name) as conn:
            return _version(conn, user, name, version)

    def create_version(
        self, identity: Identity, user: str, name: str, version: str, *, description: str = ""
    ) -> BoxVersion:
        """A new ``unreleased`` version (write); Invalid version string, Exists."""
        checked_version(version)
        _check_descriptions(None, description)
        with self._writing(identity, user, name) as conn:
            existing = box_store.get_version(conn, user, name, version)
            if existing is not None:
                shown = _same_or_equal(version, existing.version)
                raise Exists(f"box {user}/{name} already has version {shown}")
            box_store.insert_version(conn, user, name, version, "unreleased", description)
            return _version(conn, user, name, version)

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
        if new_version is not None:
            checked_version(new_version)
        _check_descriptions(None, description)
        with self._writing(identity, user, name) as conn:
            found = _version(conn, user, name, version)
            if new_version is not None and new_version != found.version:
                if found.status != "unreleased":
                    raise Invalid(
                        f"version {found.version} of {user}/{name} is {found.status}: only an "
                        "unreleased version may be renamed (publish a new version instead)"
                    )
                clash = box_store.get_version(conn, user, name, new_version)
                if clash is not None and clash.pk != found.pk:
                    shown = _same_or_equal(new_version, clash.version)
                    raise Exists(f"box {user}/{name} already has version {shown}")
            box_store.update_version(conn, found, version=new_version, description=description)
            return _version(conn, user, name, new_version or found.version)

    def delete_version(self, identity: Identity, user: str, name: str, version: str) -> None:
        """Delete a version, its providers and the files only they used (write)."""
        with self._writing(identity, user, name) as conn:
            blobs = box_store.delete_version(conn, _version(conn, user, name, version).pk)
        self._free(blobs)

    def release_version(self, identity: Identity, user: str, name: str, version: str) -> BoxVersion:
        """Make a version ``active`` (write). Invalid when no provider has a ready file or a
        url, or when it is already active (the message says "already been released", which
        Packer takes for success)."""
        with self._writing(identity, user, name) as conn:
            found = _version(conn, user, name, version)
            if found.status == "active":
                raise Invalid(f"version {found.version} of {user}/{name} has already been released")
            if not any(p.installable for p in found.providers):
                raise Invalid(
                    f"version {found.version} of {user}/{name} has no provider with an uploaded "
                    "file or a url; add a provider and upload its box before releasing"
                )
            box_store.update_version(conn, found, status="active")
            return _version(conn, user, name, found.version)

    def revoke_version(self, identity: Identity, user: str, name: str, version: str) -> BoxVersion:
        """Make an active version ``revoked`` (write); Invalid unless it is active."""
        with self._writing(identity, user, name) as conn:
            found = _version(conn, user, name, version)
            if found.status != "active":
                raise Invalid(
                    f"version {found.version} of {user}/{name} is {found.status}, not released: "
                    "only a released version can be revoked"
                )
            box_store.update_version(conn, found, status="revoked")
            return _version(conn, user, name, found.version)

    # -- providers -----------------------------------------------------------------------------

    def get_provider(
        self, identity: Identity, user: str, name: str, version: str, provider: str
    ) -> BoxProvider:
        """One provider of a version (read)."""
        with self._reading(identity, user, name) as conn:
            return _provider(_version(conn, user, name, version), provider)

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
        box_names.check_provider(provider)
        if url:
            box_names.check_url(url)
        box_names.check_checksum(checksum, checksum_type)
        with self._writing(identity, user, name) as conn:
            found = _version(conn, user, name, version)
            if found.provider(provider) is not None:
                raise Exists(
                    f"version {found.version} of {user}/{name} already has provider {provider}"
                )
            pk = box_store.insert_provider(
                conn,
                found.pk,
                provider,
                url=url or None,
                checksum=checksum,
                checksum_type=checksum_type,
            )
            return box_store.get_provider(conn, pk)

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
        if new_name is not None:
            box_names.check_provider(new_name)
        if url:
            box_names.check_url(url)
        with self._writing(identity, user, name) as conn:
            found = _version(conn, user, name, version)
            current = _provider(found, provider)
            changes = _provider_changes(found, current, new_name, url, checksum, checksum_type)
            if changes:
                box_store.update_provider(conn, current.pk, **changes)
            return box_store.get_provider(conn, current.pk)

    def delete_provider(
        self, identity: Identity, user: str, name: str, version: str, provider: str
    ) -> None:
        """Delete a provider and its file unless another record uses it (write)."""
        with self._writing(identity, user, name) as conn:
            found = _provider(_version(conn, user, name, version), provider)
            blobs = box_store.delete_provider(conn, found.pk)
        self._free(blobs)

    # -- files ---------------------------------------------------------------------------------

    def upload_target(
        self, identity: Identity, user: str, name: str, version: str, provider: str
    ) -> UploadTarget:
        """The provider's upload secret and callback id (write); the same ones again until a
        file arrives through them."""
        with self._writing(identity, user, name) as conn:
            found = _provider(_version(conn, user, name, version), provider)
            return box_files.target(conn, self._key, found, identity.grantee)

    def begin_upload(self, secret: str) -> ProviderUpload:
        """Start receiving the file behind upload ``secret``: NotFound for an unknown secret,
        FileConflict for one already used, Refused (403) when the token it was handed to
        lost its write access."""
        secret_sha256 = hash_secret(secret)
        with self.storage.connection() as conn:
            provider_pk, grantee = box_files.secret_row(conn, secret_sha256)
            user, name = box_store.provider_box(conn, provider_pk)
        refused = "this upload URL no longer carries write access: "
        try:
            holder = grant_holder(grantee, self.accounts)
        except Unauthenticated as exc:
            raise Refused(403, refused + str(exc)) from None
        try:
            self._decide(holder, "write", user, name)
        except Refused as exc:
            raise Refused(403, refused + str(exc)) from None
        return ProviderUpload(provider_pk, secret_sha256, self.storage.tmp_dir)

    def finish_upload(self, upload: ProviderUpload) -> BoxProvider:
        """Make a whole upload the provider's file (see "Re-uploads" in the module doc); the
        secret is spent. The temp file never outlives the call."""
        return box_files.finish(self.storage, upload)

    def complete_upload(
        self, identity: Identity, user: str, name: str, version: str, provider: str, callback: str
    ) -> BoxProvider:
        """The direct upload's callback (write): FileConflict when ``callback`` was already
        used or belongs to another provider, Invalid when no file has arrived."""
        with self._writing(identity, user, name) as conn:
            found = _provider(_version(conn, user, name, version), provider)
            box_files.complete(conn, found, callback)
            return box_store.get_provider(conn, found.pk)

    def open_file(
        self, identity: Identity, user: str, name: str, version: str, provider: str
    ) -> BoxFile:
        """The provider's hosted file to send (read; any status: unreleased and revoked
        versions' files stay downloadable to readers). NotFound without a ready file."""
        with self._reading(identity, user, name) as conn:
            found = _provider(_version(conn, user, name, version), provider)
            blob = box_store.provider_blob(conn, found.pk)
        if not found.hosted or blob is None or found.size is None or found.sha256 is None:
            raise NotFound(f"provider {provider} of {user}/{name} {version} has no uploaded file")
        return BoxFile(self.storage.files_dir / blob, found.size, found.sha256)

    # -- Atlas uploads -------------------------------------------------------------------------

    def atlas_version_hook(
        self, metadata: dict[str, str] | None
    ) -> Callable[[Connection, Version], None] | None:
        """For an Atlas ``vagrant.box`` version request with ``metadata``: checks made before
        anything is stored (Invalid: a bad ``version`` or ``provider``) and the step that
        lands the version in the box model inside the storage's create_version transaction
        (Exists: the box version has that provider already). None when nothing lands."""
        return atlas_landing(metadata)


# -- helpers on a connection the service holds -------------------------------------------------


def decide(
    accounts: Accounts, identity: Identity, operation: policy.Operation, user: str, name: str
) -> None:
    """Raise :class:`Refused` unless the policy allows ``operation`` on box ``user/name``
    (the namespace's kind and the box's visibility looked up as the policy needs them)."""
    if identity.admin:
        return  # no lookups for the administrator
    visibility = accounts.visibility(user, name) if operation == "read" else "private"
    kind = accounts.kind(user) if operation == "write" else None
    decision = policy.decide(identity, operation, policy.Namespace(user, kind), visibility)
    if not decision.allowed:
        reason = f"box {user}/{name} not found" if decision.status == 404 else decision.reason
        raise Refused(decision.status, reason)


def _box(conn: Connection, user: str, name: str) -> Box:
    found = box_store.get_box(conn, user, name)
    if found is None:
        raise NotFound(f"box {user}/{name} not found")
    return found


def _version(conn: Connection, user: str, name: str, version: str) -> BoxVersion:
    try:
        found = box_store.get_version(conn, user, name, version)
    except box_version.BadVersion:
        found = None  # not a version string: no such version
    if found is None:
        raise NotFound(f"box {user}/{name} has no version {version!r}")
    return found


def _provider(version: BoxVersion, provider: str) -> BoxProvider:
    found = version.provider(provider)
    if found is None:
        raise NotFound(
            f"version {version.version} of {version.user}/{version.name} has no provider "
            f"{provider!r}"
        )
    return found


def _check_descriptions(short_description: str | None, description: str | None) -> None:
    box_names.check_text("short_description", short_description, box_names.MAX_SHORT_DESCRIPTION)
    box_names.check_text("description", description, box_names.MAX_DESCRIPTION)


def _set_public(conn: Connection, user: str, name: str, public: bool, stamp: str) -> None:
    """The artifact's visibility, as ``atlas-ci registry artifact set-visibility`` sets it."""
    conn.lock("visibility", user, name)
    conn.execute("DELETE FROM public_artifacts WHERE namespace = ? AND name = ?", (user, name))
    if public:
        conn.execute(
            "INSERT INTO public_artifacts (namespace, name, since) VALUES (?, ?, ?)",
            (user, name, stamp[:19] + "Z"),
        )


def _readable(identity: Identity) -> tuple[str, list[object]]:
    """SQL on ``a``/``pa`` (see :mod:`.box_store`) keeping the boxes ``identity`` may read:
    :func:`.policy.decide`'s read rule as a query (public, or a role in the namespace)."""
    if identity.admin:
        return "1 = 1", []
    namespaces = sorted(identity.roles) if not identity.anonymous else []
    if not namespaces:
        return "pa.namespace IS NOT NULL", []
    marks = ", ".join("?" for _ in namespaces)
    return f'(pa.namespace IS NOT NULL OR a."user" IN ({marks}))', list(namespaces)


def _may_read(identity: Identity, box: Box) -> bool:
    """The policy's own answer for one box found by :func:`_readable` (they must agree)."""
    visibility: Visibility = "private" if box.private else "public"
    namespace = policy.Namespace(box.user)
    return policy.decide(identity, "read", namespace, visibility).allowed


def _query_filter(query: BoxQuery) -> tuple[list[str], list[object]]:
    """The search's own conditions; Invalid for a parameter out of range."""
    if not 1 <= query.limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}, not {query.limit}")
    if not 1 <= query.page <= MAX_PAGE:
        raise Invalid(f"page must be between 1 and {MAX_PAGE}, not {query.page}")
    if query.sort not in _SORTS:
        raise Invalid(f"sort must be one of {', '.join(_SORTS)}, not {query.sort!r}")
    if query.order not in ("asc", "desc"):
        raise Invalid(f"order must be asc or desc, not {query.order!r}")
    if len(query.q) > MAX_QUERY:
        raise Invalid(f"q is longer than {MAX_QUERY} characters")
    clauses: list[str] = []
    values: list[object] = []
    for word in query.q.split()[:8]:
        pattern = "%" + _escape_like(word.lower()) + "%"
        clauses.append(
            "(LOWER(a.\"user\" || '/' || a.name) LIKE ? ESCAPE '!' OR "
            "LOWER(COALESCE(d.short_description, '')) LIKE ? ESCAPE '!')"
        )
        values += [pattern, pattern]
    if query.provider is not None:
        box_names.check_provider(query.provider)
        clauses.append(box_store.HAS_ACTIVE_PROVIDER)
        values.append(query.provider)
    return clauses, values


def _escape_like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _provider_changes(
    version: BoxVersion,
    current: BoxProvider,
    new_name: str | None,
    url: str | None,
    checksum: str | None,
    checksum_type: str | None,
) -> dict[str, object]:
    """The columns an update sets; Invalid or Exists for a change that cannot be made."""
    changes: dict[str, object] = {}
    if new_name is not None and new_name != current.name:
        if version.provider(new_name) is not None:
            raise Exists(
                f"version {version.version} of {version.user}/{version.name} already has "
                f"provider {new_name}"
            )
        changes["name"] = new_name
    if url is not None:
        changes["url"] = url or None
    if checksum is not None or checksum_type is not None:
        pair = (
            checksum if checksum is not None else current.checksum,
            checksum_type if checksum_type is not None else current.checksum_type,
        )
        box_names.check_checksum(*pair)
        changes["checksum"], changes["checksum_type"] = pair
    return changes


def atlas_landing(metadata: dict[str, str] | None) -> Callable[[Connection, Version], None] | None:
    """See :meth:`Boxes.atlas_version_hook`."""
    named = (metadata or {}).get("version")
    provider = (metadata or {}).get("provider")
    if named is not None:
        checked_version(named, field="metadata")
        if provider is None:
            raise Invalid(
                f"metadata version {named!r} names a box version: send metadata provider "
                "too (e.g. virtualbox)"
            )
        box_names.check_provider(provider)
    elif provider is None or provider_problem(provider) is not None:
        return None  # as before: listed nowhere but the Atlas API
    return _landing(named, provider)


def _landing(named: str | None, provider: str) -> Callable[[Connection, Version], None]:
    """The step that lands a new Atlas version in the box model."""

    def land(conn: Connection, version: Version) -> None:
        if not version.file:
            return  # no file, nothing Vagrant could install
        target = named if named is not None else str(version.version)
        conn.lock("box", version.user, version.name)
        if box_store.land(conn, version.user, version.name, target, provider, version.pk):
            return
        if named is not None:
            raise Exists(
                f"box version {target} of {version.user}/{version.name} already has provider "
                f"{provider}; build it under a new metadata version, or delete that provider"
            )
        # A numbered version whose number a publisher already gave a box version with this
        # provider: it stays an Atlas version only, as versions without a provider do.

    return land
