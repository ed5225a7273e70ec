"""What Packer built: builds from ``packer-manifest.json`` or one artifact JSON file.

Both loaders validate everything they return (all or nothing): the shape of the JSON, the
build selection, and that every listed file exists and is a regular file. Every problem is
an :class:`~atlas_ci.errors.InputFileError` naming the input the way the user wrote it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from atlas_ci import jsontext
from atlas_ci.errors import ConfigError, InputFileError
from atlas_ci.jsontext import is_text, kind
from atlas_ci.metadata import metadata_from_mapping
from atlas_ci.textfile import MiB, describe_mode, quoted, read_text, unsendable

MAX_MANIFEST_BYTES = 64 * MiB
MAX_ARTIFACT_JSON_BYTES = 64 * MiB
MAX_JSON_VALUES = 1_000_000
"""The most JSON values (objects, arrays, strings, numbers...) a manifest or an artifact JSON
may hold. The byte cap alone does not bound the parse: 64 MiB of ``{},`` are 21 million
dicts, 1.6 GB. A million values parse in well under 200 MB whatever their kind, and a
Packer manifest spends about 15 on a build: some 60,000 builds (Packer appends every run)."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


@dataclass(frozen=True)
class Artifact:
    """One artifact to upload.

    ``files`` are absolute, with ``..`` and directory symlinks resolved; the last component
    is kept as listed, so a symlinked file is archived under its own name, not its target's.
    """

    build: str  # build name from the manifest ("" for artifact JSON)
    builder_type: str  # e.g. "amazon-ebs", "" if unknown
    id: str  # artifact id, may be ""
    files: tuple[Path, ...]  # absolute, validated regular files
    metadata: dict[str, str] | None  # builder-provided metadata (artifact JSON), else None
    source: str  # the manifest/artifact-json path as the user wrote it (for messages)


@dataclass(frozen=True)
class _Build:
    index: int
    name: str
    builder_type: str
    artifact_id: str
    files: tuple[str, ...]
    run_uuid: str

    def label(self) -> str:
        return f"build {quoted(self.name)}" if self.name else f"build #{self.index + 1}"


def load_manifest(
    path: str,
    builds: Sequence[str] = (),
    *,
    cwd: Path | None = None,
    workspace: Path | None = None,
    allow_outside_workspace: bool = True,
) -> list[Artifact]:
    """The artifacts of the last Packer run recorded in the manifest at ``path``.

    ``builds`` keeps only the builds with those names (``web`` or ``amazon-ebs.web``); an
    unknown name is an error listing the names of the last run.
    """
    here = cwd if cwd is not None else Path.cwd()
    if isinstance(builds, str):
        builds = (builds,)
    label = f"manifest {quoted(path)}"
    text = read_text(path, what="manifest", limit=MAX_MANIFEST_BYTES, cwd=here)
    parsed, last_run = _parse_manifest(_parse_json(text, label, path, plain=True), label, path)
    selected = _select(_last_run(parsed, last_run, label, path), builds, label, path)
    base = _absolute(path, here).parent
    return [
        Artifact(
            build=build.name,
            builder_type=build.builder_type,
            id=build.artifact_id,
            files=_resolve_files(
                build.files,
                owner=f"{build.label()} in {label}",
                base=base,
                cwd=here,
                workspace=workspace,
                allow_outside_workspace=allow_outside_workspace,
            ),
            metadata=None,
            source=path,
        )
        for build in selected
    ]


def _parse_manifest(data: object, label: str, path: str) -> tuple[list[_Build], str | None]:
    """The builds a manifest lists (at least one) and its ``last_run_uuid``."""
    hint = "give the file written by Packer's manifest post-processor"
    if not isinstance(data, dict) or "builds" not in data:
        raise InputFileError(
            f'{label} is not a Packer manifest (no "builds" list)', hint, path=path
        )
    raw_builds = data["builds"]
    if not isinstance(raw_builds, list):
        raise InputFileError(
            f'{label}: "builds" is a {kind(raw_builds)}, not a list', hint, path=path
        )
    last_run = data.get("last_run_uuid")
    if last_run is not None and not isinstance(last_run, str):
        raise InputFileError(
            f'{label}: "last_run_uuid" is a {kind(last_run)}, not a string', hint, path=path
        )
    parsed = [_parse_build(index, raw, label, path) for index, raw in enumerate(raw_builds)]
    if not parsed:
        raise InputFileError(
            f"{label} lists no builds", "check that the Packer build succeeded", path=path
        )
    return parsed, last_run


def _last_run(parsed: list[_Build], last_run: str | None, label: str, path: str) -> list[_Build]:
    """The builds of the last run; all of them when the manifest records no run ids."""
    if not (last_run and any(build.run_uuid for build in parsed)):
        return parsed
    run = [build for build in parsed if build.run_uuid == last_run]
    if not run:
        raise InputFileError(
            f"{label} has no build of its last run ({quoted(last_run)})",
            "check that this is the manifest the current Packer run wrote",
            path=path,
        )
    return run


def load_artifact_json(
    path: str,
    *,
    cwd: Path | None = None,
    workspace: Path | None = None,
    allow_outside_workspace: bool = True,
) -> list[Artifact]:
    """The one artifact described by a Packer artifact JSON file.

    Shape: ``{"id": "...", "files": ["..."], "metadata": {...}, "builder_type": "..."}``,
    every key optional; unknown keys are ignored. Metadata numbers keep their literal text.
    """
    here = cwd if cwd is not None else Path.cwd()
    label = f"artifact JSON {quoted(path)}"
    text = read_text(path, what="artifact JSON", limit=MAX_ARTIFACT_JSON_BYTES, cwd=here)
    data = _parse_json(text, label, path, plain=False)
    if not isinstance(data, dict):
        raise InputFileError(
            f"{label} is a {kind(data)}, not a JSON object",
            'write {"id": "...", "files": ["..."], "metadata": {...}}',
            path=path,
        )
    artifact_id = _optional_str(data, "id", label, path)
    builder_type = _optional_str(data, "builder_type", label, path)
    names = _file_names(data, label, path)
    metadata = _optional_metadata(data, label, path)
    files = _resolve_files(
        names,
        owner=label,
        base=_absolute(path, here).parent,
        cwd=here,
        workspace=workspace,
        allow_outside_workspace=allow_outside_workspace,
    )
    return [
        Artifact(
            build="",
            builder_type=builder_type,
            id=artifact_id,
            files=files,
            metadata=metadata,
            source=path,
        )
    ]


def _count_values(text: str) -> int:
    """An upper bound of the JSON values (and object keys) in ``text``, close to exact.

    Each value but the first follows a ``,`` or a ``:``, or opens an array; each object
    holds a ``:`` per member. Counting ``[``, ``{`` and ``,`` bounds that cheaply. Only
    when that says the text may be over the cap are the ones inside strings taken off: one
    match per string, so first the strings are counted (each is a value or a key itself).
    """
    quick = text.count(",") + text.count("[") + text.count("{") + 1
    if quick <= MAX_JSON_VALUES:
        return quick
    strings = text.count('"') // 2
    if strings > MAX_JSON_VALUES:
        return strings
    inside = 0
    for match in _STRING.finditer(text):
        start, end = match.span()
        inside += sum(text.count(mark, start, end) for mark in ",[{")
    return quick - inside


def _parse_json(text: str, label: str, path: str, *, plain: bool) -> object:
    if _count_values(text) > MAX_JSON_VALUES:
        raise InputFileError(
            f"{label} holds more than {MAX_JSON_VALUES:,} JSON values, more than this tool reads",
            "remove the builds of old runs (Packer's manifest post-processor appends every "
            "run), or check that this is the right file",
            path=path,
        )
    try:
        if plain:
            return json.loads(text)
        return jsontext.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{label} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            "check that the file is complete JSON",
            path=path,
        ) from None
    except (ValueError, RecursionError) as exc:
        # int() digit limit, or nesting deeper than the parser's stack.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InputFileError(
            f"{label} is not usable JSON: {reason}", "check the file", path=path
        ) from None


def _optional_str(data: Mapping[str, object], key: str, label: str, path: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not is_text(value):
        raise InputFileError(
            f'{label}: "{key}" is a {kind(value)}, not a string',
            f'write "{key}": "..."',
            path=path,
        )
    _check_sendable(str(value), f'{label}: "{key}"', path)
    return str(value)


def _file_names(data: Mapping[str, object], label: str, path: str) -> list[str]:
    """The artifact JSON's ``"files"``: path strings, checked sendable; none when absent."""
    raw_files = data.get("files")
    if raw_files is None:
        raw_files = []
    if not isinstance(raw_files, list) or not all(is_text(name) for name in raw_files):
        raise InputFileError(
            f'{label}: "files" must be a list of path strings',
            'write "files": ["path/to/file", ...]',
            path=path,
        )
    for number, name in enumerate(raw_files, start=1):
        _check_sendable(str(name), f'{label}: "files" entry #{number} {quoted(name)}', path)
    return [str(name) for name in raw_files]


def _optional_metadata(data: Mapping[str, object], label: str, path: str) -> dict[str, str] | None:
    """The artifact JSON's ``"metadata"`` as ``str -> str``; None when absent."""
    raw_metadata = data.get("metadata")
    if raw_metadata is None:
        return None
    try:
        return metadata_from_mapping(raw_metadata, label)
    except ConfigError as exc:
        raise InputFileError(exc.message, exc.hint, path=path) from None


def _check_sendable(text: str, where: str, path: str) -> None:
    """Refuse text with no UTF-8 form (a lone surrogate from a ``\\u`` escape) at input time.

    Sent on, it would fail on the wire or at the registry after the run had begun.
    """
    problem = unsendable(text)
    if problem:
        raise InputFileError(
            f"{where} {problem}",
            "write it as valid UTF-8 text (a \\ud800-\\udfff escape needs its pair)",
            path=path,
        )


def _parse_build(index: int, raw: object, label: str, path: str) -> _Build:
    where = f"build #{index + 1} in {label}"
    hint = "give the file written by Packer's manifest post-processor"
    if not isinstance(raw, dict):
        raise InputFileError(f"{where} is a {kind(raw)}, not an object", hint, path=path)

    def text(key: str, *, required: bool = False) -> str:
        value = raw.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            got = "missing" if key not in raw else f"a {kind(value)}"
            raise InputFileError(f'{where}: "{key}" is {got}, not a string', hint, path=path)
        _check_sendable(value, f'{where}: "{key}"', path)
        return value

    name = text("name", required=True)
    if name:
        where = f"build {quoted(name)} in {label}"
    builder_type = text("builder_type")
    artifact_id = text("artifact_id")
    run_uuid = text("packer_run_uuid")
    raw_files = raw.get("files")
    if raw_files is None:
        raw_files = []
    if not isinstance(raw_files, list):
        raise InputFileError(
            f'{where}: "files" is a {kind(raw_files)}, not a list', hint, path=path
        )
    names: list[str] = []
    for number, entry in enumerate(raw_files, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InputFileError(
                f'{where}: file #{number} is not an object with a string "name"', hint, path=path
            )
        _check_sendable(entry["name"], f"{where}: file #{number} {quoted(entry['name'])}", path)
        names.append(entry["name"])
    return _Build(index, name, builder_type, artifact_id, tuple(names), run_uuid)


def _select(run: list[_Build], wanted: Sequence[str], label: str, path: str) -> list[_Build]:
    if not wanted:
        return run

    def matches(build: _Build, name: str) -> bool:
        return name in (build.name, f"{build.builder_type}.{build.name}")

    unknown = [name for name in wanted if not any(matches(build, name) for build in run)]
    if unknown:
        available = ", ".join(dict.fromkeys(quoted(b.name) for b in run))
        missing = ", ".join(quoted(name) for name in unknown)
        plural = "builds" if len(unknown) > 1 else "build"
        raise InputFileError(
            f"{plural} {missing} not in the last run of {label}; builds in that run: {available}",
            "choose among the builds listed",
            path=path,
        )
    return [build for build in run if any(matches(build, name) for name in wanted)]


def _absolute(path: str, cwd: Path) -> Path:
    given = Path(path)
    return given if given.is_absolute() else cwd / given


def _resolve_files(
    names: Sequence[str],
    *,
    owner: str,
    base: Path,
    cwd: Path,
    workspace: Path | None,
    allow_outside_workspace: bool,
) -> tuple[Path, ...]:
    resolved = (
        _resolve_file(name, owner, base, cwd, workspace, allow_outside_workspace) for name in names
    )
    return tuple(dict.fromkeys(resolved))  # a file listed twice is uploaded once


def _find(name: str, label: str, base: Path, cwd: Path) -> Path:
    """Where a listed file is: the manifest's directory first (Packer usually ran there),
    then the working directory."""
    given = Path(name)
    candidates = [given] if given.is_absolute() else [base / given, cwd / given]
    unique: dict[str, Path] = {}
    for place in candidates:
        unique.setdefault(os.path.abspath(place), place)
    places = list(unique.values())
    found = next((place for place in places if os.path.lexists(place)), None)
    if found is None:
        where = " or ".join(str(place) for place in places)
        raise InputFileError(
            f"{label} not found: no {where}",
            "run from the directory Packer ran in, or fix the path in the file",
            path=name,
        )
    return found


def _resolve_file(
    name: str,
    owner: str,
    base: Path,
    cwd: Path,
    workspace: Path | None,
    allow_outside_workspace: bool,
) -> Path:
    label = f"file {quoted(name)} of {owner}"
    if not name:
        raise InputFileError(f"an empty file name in {owner}", "remove the entry", path=name)
    if "\0" in name:
        raise InputFileError(f"{label} contains a NUL byte", "fix the file name", path=name)
    found = _find(name, label, base, cwd)
    try:
        info = os.stat(found)
    except FileNotFoundError:
        raise InputFileError(
            f"{label} is a dangling symlink ({found})",
            "point the link at an existing file",
            path=name,
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputFileError(
                f"{label} is a symlink loop ({found})", "fix the symlink", path=name
            ) from None
        raise InputFileError(
            f"{label} cannot be accessed ({found}): {exc.strerror or exc}",
            "check the file's permissions",
            path=name,
        ) from None
    if not stat.S_ISREG(info.st_mode):
        hint = (
            "list the files inside the directory, not the directory"
            if stat.S_ISDIR(info.st_mode)
            else "artifact files must be regular files"
        )
        raise InputFileError(f"{label} is {describe_mode(info.st_mode)} ({found})", hint, path=name)
    if not os.access(found, os.R_OK):
        raise InputFileError(
            f"{label} cannot be read: permission denied ({found})",
            "make the file readable by this job",
            path=name,
        )
    target = Path(os.path.realpath(found))
    if workspace is not None and not allow_outside_workspace:
        root = Path(os.path.realpath(workspace))
        if not target.is_relative_to(root):
            raise InputFileError(
                f"{label} resolves to {target}, outside the workspace {root}",
                "keep artifacts in the workspace, or pass --allow-outside-workspace",
                path=name,
            )
    return Path(os.path.realpath(found.parent)) / found.name
