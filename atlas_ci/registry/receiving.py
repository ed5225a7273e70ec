"""Receiving an uploaded file into storage, for every door that takes one (the Atlas file PUT,
the Vagrant Cloud box PUT): the body streamed into an :class:`~.uploads.Upload`, a short body
answered 400, and the file system's refusals answered as a client can act on them."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from atlas_ci.registry.http import HTTPError, ReadInto
from atlas_ci.registry.request import Request
from atlas_ci.registry.uploads import Upload


def receive(request: Request, upload: Upload, length: int, what: str) -> None:
    """Stream ``length`` body bytes into ``upload``; a body cut short answers 400 (the
    connection closes), telling the client to PUT ``what`` again to the same URL."""
    upload.reserve(length)  # a full disk answers 507 before the client sends the body

    def into_upload(read_into: ReadInto, length: int) -> int:
        upload.receive(read_into, length)
        return upload.size

    request.stream_body(into_upload, length)
    if upload.size < length:
        request.note = f"upload incomplete: {upload.size} of {length} bytes"
        raise HTTPError(
            400,
            f"upload incomplete: received {upload.size} of {length} bytes; "
            f"PUT the whole {what} again to the same upload_path",
        )


@contextlib.contextmanager
def storing(what: str) -> Iterator[None]:
    """A full disk or quota is 507, a file over the file system's limit 413; anything else
    goes on up (a bug, or the connection)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HTTPError(507, "the registry is out of disk space") from None
        if exc.errno == errno.EFBIG:
            raise HTTPError(413, f"the {what} is larger than the registry can store") from None
        raise
