"""What one run produced: a version per build, for every reporter to render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

# The ``--json`` line's shape (docs/settings.md): scripts parse it, so its keys are typed.


class FileJSON(TypedDict):
    size: int
    sha256: str


class BuildJSON(TypedDict):
    build: str
    artifact_type: str
    version: int | None
    id: str | None
    metadata: dict[str, str] | None
    file: FileJSON | None


class _ResultKeys(TypedDict):
    artifact: str
    artifact_type: str
    version: int | None
    id: str | None
    builds: list[BuildJSON]


class ResultJSON(_ResultKeys, total=False):
    dry_run: bool  # present, and true, in a dry run only


@dataclass(frozen=True)
class FileInfo:
    size: int
    sha256: str


@dataclass(frozen=True)
class BuildResult:
    build: str
    artifact: str
    artifact_type: str
    version: int | None  # None in a dry run: nothing was created
    file: FileInfo | None
    seconds: float  # wall time of this build's archive + upload
    metadata: dict[str, str] | None

    @property
    def id(self) -> str | None:
        """``user/name/type/N``, Packer's result artifact id."""
        if self.version is None:
            return None
        return f"{self.artifact}/{self.artifact_type}/{self.version}"


@dataclass(frozen=True)
class Result:
    builds: tuple[BuildResult, ...]
    dry_run: bool = False

    @property
    def last(self) -> BuildResult:
        return self.builds[-1]

    @property
    def version(self) -> int | None:
        return self.last.version

    @property
    def id(self) -> str | None:
        return self.last.id

    @property
    def artifact(self) -> str:
        return self.last.artifact

    @property
    def artifact_type(self) -> str:
        return self.last.artifact_type

    def versions(self) -> dict[str, int | None]:
        """Build name -> version (the action's ``versions`` output), none lost.

        Builds that share a name (two ``web`` builds of one run) are keyed ``web``, ``web#2``,
        ``web#3``... in upload order, so every version is there and a name used once keeps
        its plain key (what the output was before). A later key already taken by a build
        really named ``web#2`` moves on to the next free number.
        """
        keyed: dict[str, int | None] = {}
        seen: dict[str, int] = {}
        names = {b.build for b in self.builds}
        for b in self.builds:
            key = b.build
            if key in keyed:
                n = seen.get(b.build, 1)
                while key in keyed or key in names:
                    n += 1
                    key = f"{b.build}#{n}"
                seen[b.build] = n
            keyed[key] = b.version
        return keyed

    def to_json(self) -> ResultJSON:
        """The ``--json`` line's object."""
        data: ResultJSON = {
            "artifact": self.artifact,
            "artifact_type": self.artifact_type,
            "version": self.version,
            "id": self.id,
            "builds": [
                {
                    "build": b.build,
                    "artifact_type": b.artifact_type,
                    "version": b.version,
                    "id": b.id,
                    "metadata": b.metadata,
                    "file": None
                    if b.file is None
                    else {"size": b.file.size, "sha256": b.file.sha256},
                }
                for b in self.builds
            ],
        }
        if self.dry_run:
            data["dry_run"] = True
        return data
