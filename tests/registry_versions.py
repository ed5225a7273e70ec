"""A version made in a registry's Storage with only what a test cares about spelled out."""

from __future__ import annotations

from atlas_ci.registry.storage import Storage, Version


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
