"""``atlas-ci registry``: every command's help, its errors and exit codes, its outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from atlas_ci.registry.storage import Storage
from tests.registry_proc import REPO_ROOT

COMMANDS = [
    [],
    ["user"],
    ["user", "create"],
    ["user", "list"],
    ["org"],
    ["org", "create"],
    ["org", "list"],
    ["org", "add-member"],
    ["org", "remove-member"],
    ["org", "members"],
    ["token"],
    ["token", "create"],
    ["token", "list"],
    ["token", "revoke"],
    ["artifact"],
    ["artifact", "set-visibility"],
]


def run(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlas_ci", "registry", f"--data={data}", *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    Storage(directory).close()
    return directory


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "registry")
def test_every_command_has_help(data: Path, command: list[str]) -> None:
    done = run(data, *command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: atlas-ci registry")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["user", "create"], 2, "required: name"),
        (["user", "create", "api"], 2, "reserved"),
        (["user", "create", "a/b"], 2, "cannot be a path segment"),
        (["user", "create", "alice"], 5, "'alice' already exists as a user"),
        (["org", "create", "alice"], 5, "'alice' already exists as a user"),
        (["org", "add-member", "hashicorp", "alice", "--role", "admin"], 2, "invalid choice"),
        (["org", "add-member", "hashicorp", "bob", "--role", "read"], 2, "no user named 'bob'"),
        (["org", "add-member", "alice", "alice", "--role", "read"], 2, "is a user"),
        (["org", "remove-member", "hashicorp", "alice"], 2, "not a member"),
        (["token", "create", "--user", "bob"], 2, "no user named 'bob'"),
        (["token", "create", "--user", "alice", "--expires", "30"], 2, "30d"),
        (["token", "create", "--user", "alice", "--expires", "0d"], 2, "positive"),
        (["token", "list", "--user", "bob"], 2, "no user named 'bob'"),
        (["token", "revoke", "nope"], 2, "no token with that id (not repeated"),
        (["token", "revoke", "0123456789ab"], 2, "no token with id '0123456789ab'"),
        (["artifact", "set-visibility", "hashicorp/web", "public"], 2, "does not exist"),
        (["artifact", "set-visibility", "hashicorp/web", "open"], 2, "invalid choice"),
        (["artifact", "set-visibility", "web", "public"], 2, "USER/NAME"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_line_with_a_documented_code(
    data: Path, args: list[str], code: int, words: str
) -> None:
    assert run(data, "user", "create", "alice").returncode == 0
    assert run(data, "org", "create", "hashicorp").returncode == 0
    done = run(data, *args)
    assert done.returncode == code, done.stderr
    assert words in done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


def test_data_may_also_follow_the_command(data: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "atlas_ci", "registry"]
    created = subprocess.run(
        [*argv, "user", "create", "alice", "--data", str(data)], env=env, capture_output=True
    )
    assert created.returncode == 0, created.stderr
    assert run(data, "user", "list").stdout.startswith("alice\t")
    # Given twice, the one after the command wins (as it is read last).
    listed = subprocess.run(
        [*argv, f"--data={tmp_path / 'typo'}", "user", "list", f"--data={data}"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert listed.stdout.startswith("alice\t"), listed.stderr


def test_a_missing_data_directory_is_a_usage_error(tmp_path: Path) -> None:
    done = run(tmp_path / "typo", "user", "list")
    assert done.returncode == 2
    assert f"--data {tmp_path / 'typo'}: no such directory" in done.stderr
    assert not (tmp_path / "typo").exists()


def test_token_create_prints_only_the_token_and_list_shows_it_without_secrets(
    data: Path,
) -> None:
    run(data, "user", "create", "alice")
    run(data, "org", "create", "hashicorp")
    assert run(data, "org", "add-member", "hashicorp", "alice", "--role", "read").returncode == 0
    assert run(data, "org", "add-member", "hashicorp", "alice", "--role", "write").returncode == 0
    members = json.loads(run(data, "org", "members", "hashicorp", "--json").stdout)
    assert members == [{"user": "alice", "role": "write"}]
    created = run(data, "token", "create", "--user", "alice", "--read-only", "--expires", "12h")
    token = created.stdout
    assert token.endswith("\n") and token.count("\n") == 1
    token = token.strip()
    assert token.startswith("atlas_") and len(token) > 40
    assert token not in created.stderr
    [listed] = json.loads(run(data, "token", "list", "--json").stdout)
    assert listed["user"] == "alice"
    assert listed["read_only"] is True
    assert listed["last_used"] is None
    assert listed["expires"] > listed["created"]
    assert listed["id"] in created.stderr
    table = run(data, "token", "list").stdout
    assert table.splitlines()[0].split("\t") == [
        "ID",
        "USER",
        "SCOPE",
        "CREATED",
        "EXPIRES",
        "LAST_USED",
    ]
    assert listed["id"] in table and "read-only" in table
    assert token not in table
    assert run(data, "token", "revoke", listed["id"]).returncode == 0
    assert json.loads(run(data, "token", "list", "--json").stdout) == []
