"""A box provider's file: its upload secret and callback, the upload itself, and freeing files.

The service (:mod:`.boxes`) decides access and holds the transactions; these functions run on
its connection. An upload streams through :class:`ProviderUpload`, the Atlas upload's
:class:`~.storage.Upload` (temp file under ``tmp/``, locked, sha256 computed as it arrives),
and becomes ``files/box-<provider pk>`` (:func:`.box_store.own_blob`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from atlas_ci.registry import box_store
from atlas_ci.registry.box_model import BoxProvider, FileConflict, UploadTarget
from atlas_ci.registry.database import Connection
from atlas_ci.registry.model import Invalid, NotFound
from atlas_ci.registry.sealing import hash_secret, seal_secret, unseal_secret
from atlas_ci.registry.storage import Storage
from atlas_ci.registry.uploads import Upload, fsync_dir, locked_temp_file


class ProviderUpload(Upload):
    """A file arriving for one provider, through the upload secret ``secret_sha256`` names.

    As :class:`~.storage.Upload`: :meth:`receive` the body, then hand it to
    :meth:`.boxes.Boxes.finish_upload` or :meth:`abort` it.
    """

    def __init__(self, provider_pk: int, secret_sha256: str, tmp_dir: Path) -> None:
        # Not Upload.__init__, which names an Atlas version: the same fields, for a provider.
        self.provider_pk = provider_pk
        self.secret_sha256 = secret_sha256
        self._fd, self.path = locked_temp_file(tmp_dir, f"upload-{provider_pk}-")
        self._open = True
        self.sha256 = hashlib.sha256(b"").hexdigest()
        self.size = 0


def _sealing_domain(provider_pk: int) -> int:
    """The row number a provider's secret is sealed under: negative, so no provider shares a
    keystream with an Atlas version (whose rows are numbered from 1)."""
    return -provider_pk


def callback_of(secret: str) -> str:
    """The callback id that goes with an upload secret (derived: nothing more to keep)."""
    return hmac.new(secret.encode("utf-8"), b"box upload callback", hashlib.sha256).hexdigest()


def target(
    conn: Connection, key: bytes, provider: BoxProvider, grantee: str | None
) -> UploadTarget:
    """The provider's unused upload secret, or a new one (replacing a used one)."""
    row = conn.execute(
        "SELECT sealed, received FROM box_uploads WHERE provider_pk = ?", (provider.pk,)
    ).fetchone()
    if row is not None and not row[1]:
        secret = unseal_secret(key, _sealing_domain(provider.pk), bytes(row[0]))
        return UploadTarget(secret, callback_of(secret))
    secret = secrets.token_urlsafe(32)
    conn.execute("DELETE FROM box_uploads WHERE provider_pk = ?", (provider.pk,))
    conn.execute(
        "INSERT INTO box_uploads (provider_pk, secret_sha256, sealed, callback_sha256, grantee, "
        "received) VALUES (?, ?, ?, ?, ?, 0)",
        (
            provider.pk,
            hash_secret(secret),
            seal_secret(key, _sealing_domain(provider.pk), secret),
            hash_secret(callback_of(secret)),
            grantee,
        ),
    )
    if provider.file_state == "none" and provider.atlas_version is None:
        box_store.update_provider(conn, provider.pk, file_state="pending")
    return UploadTarget(secret, callback_of(secret))


def secret_row(conn: Connection, secret_sha256: str) -> tuple[int, str | None]:
    """``(provider pk, grantee)`` of an unused upload secret: NotFound for an unknown one,
    FileConflict for one a file already came through."""
    row = conn.execute(
        "SELECT provider_pk, grantee, received FROM box_uploads WHERE secret_sha256 = ?",
        (secret_sha256,),
    ).fetchone()
    if row is None:
        raise NotFound("unknown upload URL; ask for a new one (GET .../upload)")
    if row[2]:
        raise FileConflict(
            "this upload URL was already used; a file arrived through it (ask for a new one "
            "to upload again)"
        )
    return int(row[0]), None if row[1] is None else str(row[1])


def place(
    conn: Connection, files_dir: Path, upload: ProviderUpload, provider: BoxProvider, released: bool
) -> None:
    """Make ``upload`` the provider's file and spend its secret (see "Re-uploads" in
    :mod:`.boxes`); FileConflict for a different file of a released provider."""
    if provider.file_state == "ready" and released:
        if provider.sha256 != upload.sha256:
            raise FileConflict(
                f"provider {provider.name} is released with a file of sha256 {provider.sha256}; "
                "a different file cannot replace it (publish a new version, or revoke first)"
            )
    else:
        declared = provider.checksum if provider.checksum_type == "sha256" else None
        if declared is not None and declared.lower() != upload.sha256:
            raise Invalid(
                f"the file's sha256 is {upload.sha256}, not the checksum declared for "
                f"provider {provider.name} ({declared}); upload the right file"
            )
        os.replace(upload.path, files_dir / box_store.own_blob(provider.pk))
        fsync_dir(files_dir)
        box_store.update_provider(
            conn,
            provider.pk,
            file_state="ready",
            size=upload.size,
            sha256=upload.sha256,
            atlas_pk=None,
        )
    conn.execute("UPDATE box_uploads SET received = 1 WHERE provider_pk = ?", (provider.pk,))


def finish(storage: Storage, upload: ProviderUpload) -> BoxProvider:
    """:meth:`.boxes.Boxes.finish_upload`: under the box's lock, the secret still unused."""
    upload.seal()
    try:
        with storage.transaction() as conn:
            user, name = box_store.provider_box(conn, upload.provider_pk)
            conn.lock("box", user, name)
            secret_row(conn, upload.secret_sha256)  # still unused, after the lock
            provider = box_store.get_provider(conn, upload.provider_pk)
            status = box_store.provider_version_status(conn, upload.provider_pk)
            place(conn, storage.files_dir, upload, provider, released=status == "active")
            return box_store.get_provider(conn, upload.provider_pk)
    finally:
        upload.abort()  # a no-op once the file was renamed


def complete(conn: Connection, provider: BoxProvider, callback: str) -> None:
    """Take a direct upload's callback: spent once, for its own provider, after the file."""
    row = conn.execute(
        "SELECT callback_sha256, received FROM box_uploads WHERE provider_pk = ?", (provider.pk,)
    ).fetchone()
    given = hash_secret(callback)
    if row is None or not hmac.compare_digest(str(row[0]), given):
        other = conn.execute(
            "SELECT 1 FROM box_uploads WHERE callback_sha256 = ?", (given,)
        ).fetchone()
        if other is not None:
            raise FileConflict("this callback belongs to another provider's upload")
        raise FileConflict(
            f"no upload of provider {provider.name} waits for this callback: it was already "
            "completed, or it belongs to an older upload URL"
        )
    if not row[1]:
        raise Invalid("no file has arrived at the upload URL yet; PUT the box there first")
    conn.execute("DELETE FROM box_uploads WHERE provider_pk = ?", (provider.pk,))


def free(conn: Connection, files_dir: Path, blobs: list[str]) -> None:
    """Remove the files of ``blobs`` that no record uses any more (after their rows went)."""
    for blob in blobs:
        if not box_store.blob_in_use(conn, blob):
            with contextlib.suppress(FileNotFoundError):
                (files_dir / blob).unlink()
