"""Stream a file to an upload URL with ``Content-Length`` set, hashing it on the way."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests

from atlas_ci import USER_AGENT

ProgressFn = Callable[[int], None]
_BLOCK = 1 << 20


@dataclass(frozen=True)
class PutResponse:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class PutOutcome:
    response: PutResponse
    sha256: str | None
    size: int


class _Body:
    """A sized, readable body: requests sends Content-Length, never chunked."""

    def __init__(self, fh: BinaryIO, size: int, hasher: Any, progress: ProgressFn | None) -> None:
        self._fh, self._size, self._hasher, self._progress = fh, size, hasher, progress
        self._sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        chunk = self._fh.read(_BLOCK)
        if chunk:
            self._sent += len(chunk)
            if self._hasher is not None:
                self._hasher.update(chunk)
            if self._progress is not None:
                self._progress(self._sent)
        return chunk


def put_file(
    url: str,
    path: Path,
    size: int,
    *,
    session: requests.Session,
    verify: bool | str,
    timeout: tuple[float, float],
    hash_file: bool = True,
    progress: ProgressFn | None = None,
    proxies: Mapping[str, str] | None = None,
) -> PutOutcome:
    """PUT ``path`` to ``url`` from offset 0; raises requests' exceptions on transport errors."""
    hasher = hashlib.sha256() if hash_file else None
    with open(path, "rb") as fh:
        resp = session.request(
            "PUT",
            url,
            data=_Body(fh, size, hasher, progress),
            headers={"Content-Length": str(size), "User-Agent": USER_AGENT},
            verify=verify,
            timeout=timeout,
            allow_redirects=False,
            proxies=dict(proxies) if proxies else None,
        )
    return PutOutcome(
        response=PutResponse(
            resp.status_code, resp.reason, dict(resp.headers), resp.content[:65536]
        ),
        sha256=hasher.hexdigest() if hasher is not None else None,
        size=size,
    )
