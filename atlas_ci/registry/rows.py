"""The ``versions`` table read back: the columns selected, a row into a :class:`Version`, and
the time stamp every row carries."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence

from atlas_ci.registry.model import Version

SELECT_VERSIONS = (
    'SELECT pk, "user", name, type, version, id, build_id, compile_id, metadata, file, state, '
    "size, sha256, created FROM versions WHERE "
)

# The same columns, of the versions one metadata_index digest names (its placeholder first).
SELECT_INDEXED = (
    'SELECT v.pk, v."user", v.name, v.type, v.version, v.id, v.build_id, v.compile_id, '
    "v.metadata, v.file, v.state, v.size, v.sha256, v.created "
    "FROM metadata_index m JOIN versions v ON v.version = m.version WHERE m.digest = ? AND "
)


def now() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def version_from_row(row: Sequence[object]) -> Version:
    """A version from the columns :data:`SELECT_VERSIONS` names, in that order."""
    (pk, user, name, type_, number, id_, build, compile_, meta, file, state, size, sha, ts) = row
    return Version(
        pk=int(str(pk)),
        user=str(user),
        name=str(name),
        type=str(type_),
        version=int(str(number)),
        id=str(id_),
        build_id=int(str(build)),
        compile_id=int(str(compile_)),
        metadata=None if meta is None else json.loads(str(meta)),
        file=bool(file),
        state="ready" if state == "ready" else "pending",
        size=None if size is None else int(str(size)),
        sha256=None if sha is None else str(sha),
        created=str(ts),
    )
