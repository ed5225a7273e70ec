"""A byte range of a file onto a connection, by ``sendfile(2)``, in as few wake-ups as it can.

Python's ``socket.sendfile`` on a socket with a timeout (every connection has one) makes the
socket non-blocking and loops: ``poll``, then ``sendfile`` of what the socket buffer takes,
then the GIL again, about once per 1.6 MB (strace, 1 GiB over 127.0.0.1). On a machine whose
cores are all busy, each of those returns waits for the scheduler and then for the GIL. Here
the socket is blocking for the send, with ``SO_SNDTIMEO`` as the bound of each wait (the
connection's timeout, as before), so the kernel moves the range in one call and the thread
sleeps until it is done: the registry's CPU for four concurrent 1 GiB downloads went from
0.67 s to about 0.5 s (``bench/downloads.py``, where nginx's is about 0.75 s). Where the
kernel cannot ``sendfile`` this file, Python's ``socket.sendfile`` (with its read/send
fallback) does it instead.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import BinaryIO

MAX_CALL = 1 << 30
"""Bytes asked of one ``sendfile`` call (Linux moves at most ~2 GiB per call anyway)."""
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)
"""What ``sendfile`` says of a file it cannot send (a FUSE or network file system, say)."""


def send_range(
    sock: socket.socket,
    blob: BinaryIO,
    offset: int,
    count: int,
    sent: Callable[[int], None],
) -> int:
    """Send ``count`` bytes of ``blob`` from ``offset``; ``sent(n)`` is told of every ``n``
    bytes that went (also before an error is raised). Returns the total, short of ``count``
    only if the file ended early. A wait past the socket's timeout raises TimeoutError."""
    timeout = sock.gettimeout()
    total = 0
    unsupported = False
    sock.settimeout(None)
    _send_timeout(sock, timeout)
    try:
        while total < count:
            try:
                moved = os.sendfile(
                    sock.fileno(), blob.fileno(), offset + total, min(count - total, MAX_CALL)
                )
            except BlockingIOError:  # SO_SNDTIMEO passed with nothing taken
                raise TimeoutError("the client took no data for the connection's timeout") from None
            except OSError as exc:
                if total == 0 and exc.errno in _UNSUPPORTED:
                    unsupported = True  # not a file the kernel can sendfile: see below
                    break
                raise
            if moved == 0:
                return total  # the file is shorter than announced
            total += moved
            sent(moved)
    finally:
        _send_timeout(sock, None)
        sock.settimeout(timeout)
    if unsupported:  # Python's own, with its read/send loop
        blob.seek(offset)
        try:
            moved = sock.sendfile(blob, offset, count)
        except OSError:
            sent(blob.tell() - offset)  # sendfile moves the file position as it goes
            raise
        sent(moved)
        return moved
    return total


def _send_timeout(sock: socket.socket, seconds: float | None) -> None:
    """``SO_SNDTIMEO``: how long a blocking send may wait for buffer space (None: forever)."""
    whole = int(seconds or 0)
    micro = int(((seconds or 0) - whole) * 1_000_000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, micro))
