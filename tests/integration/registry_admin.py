"""``atlas-ci registry ...`` run for real on a registry's data directory (the server may run)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.registry_proc import REPO_ROOT, RegistryProcess


def admin(
    registry: RegistryProcess, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python -m atlas_ci registry --data <registry's data> ARGS``; asserts exit 0 if ``check``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("ATLAS_REGISTRY_DATA", None)
    done = subprocess.run(
        [sys.executable, "-m", "atlas_ci", "registry", f"--data={registry.data}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if check:
        assert done.returncode == 0, (args, done.stderr)
    return done


def new_token(registry: RegistryProcess, user: str, *flags: str) -> str:
    """A token for ``user`` (created first if missing), as ``token create`` prints it."""
    if user not in admin(registry, "user", "list").stdout.split():
        admin(registry, "user", "create", user)
    out = admin(registry, "token", "create", "--user", user, *flags).stdout
    assert out.count("\n") == 1, "token create prints only the token"
    return out.strip()
