"""The registry inside the test process: a version made in its Storage with only what a test
cares about spelled out, and its server on a thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from atlas_ci.registry.model import Version
from atlas_ci.registry.server import Config, RegistryServer
from atlas_ci.registry.storage import Storage


def new_version(
    store: Storage,
    secret: str | None = None,
    *,
    user: str = "u",
    name: str = "n",
    artifact_type: str = "t",
    build_id: int = 0,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> Version:
    """The next version of ``user/name/artifact_type``: pending on ``secret``, else ready."""
    return store.create_version(
        user,
        name,
        artifact_type,
        artifact_id="",
        build_id=build_id,
        compile_id=0,
        metadata=metadata,
        file=secret is not None,
        upload_secret=secret,
        idempotency_key=idempotency_key,
    )


@contextlib.contextmanager
def serving(storage: Storage) -> Iterator[RegistryServer]:
    """``storage`` served on 127.0.0.1 (token ``tok``) until the block ends; then the server
    is stopped, must have no request left in flight, and ``storage`` is closed."""
    server = RegistryServer(("127.0.0.1", 0), storage, Config(tokens=("tok",), timeout=5))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        assert server.drain(5) == 0
        storage.close()
