# The image behind `uses: org/atlas-upload-action@v1` (the runner builds it from this file, or
# pulls ghcr.io/org/atlas-upload-action:<version>) and behind `docker run` in GitLab CI and
# Jenkins. It runs as whatever user starts it: root on GitHub (a USER line would break writing
# $GITHUB_OUTPUT), the agent's uid on Jenkins. Nothing depends on the working directory.

# An official Debian-based image with the Debian release pinned: the plain 3.12-slim tag moved
# to trixie in 2025. The container test swaps in a stand-in built offline (tests/container/).
ARG BASE_IMAGE=python:3.12-slim-bookworm
FROM ${BASE_IMAGE}

# For `sh` and the `atlas-ci` script (the entrypoint runs `python -I`, which ignores PYTHON*):
# write no .pyc at run time (the tree is read-only to a non-root user) and hold no log back.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Run-time dependencies in their own layer, reused while only our code changes. Every one is
# pinned, so --no-deps lets nothing unpinned in and `pip check` fails the build if one is
# missing from requirements.txt.
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir --no-deps -r /app/requirements.txt \
 && pip check

# The package itself, built by a pinned setuptools that is removed again; pip compiles the
# bytecode here, once, so no run needs to. The `atlas-ci` script pip writes then gets `-I` on
# its shebang: a CI job's PYTHONPATH must not change what it imports (the build fails if the
# shebang was not the plain form this expects).
COPY requirements-build.txt pyproject.toml README.md /tmp/atlas-ci/
COPY atlas_ci /tmp/atlas-ci/atlas_ci
RUN pip install --no-cache-dir -r /tmp/atlas-ci/requirements-build.txt \
 && pip install --no-cache-dir --no-deps --no-build-isolation /tmp/atlas-ci \
 && pip uninstall --yes setuptools \
 && rm -rf /tmp/atlas-ci \
 && script="$(command -v atlas-ci)" \
 && sed -i '1s|^\(#!/[^ ]*python[0-9.]*\)$|\1 -I|' "$script" \
 && grep -q -m 1 '^#!/[^ ]*python[0-9.]* -I$' "$script" \
 && atlas-ci --version

# The entrypoints outside the package: entrypoint.sh execs a program on PATH (Jenkins' `cat`,
# GitLab's `sh`) within a millisecond, as Jenkins checks with `docker top` right after
# `docker run`; everything else it hands to `python -I entrypoint.py`, which imports only the
# installed package (-I ignores PYTHONPATH, PYTHON* and the user's site-packages that the
# runner may forward from the workflow's env).
COPY entrypoint.sh entrypoint.py /app/

# Exec form with absolute paths (no PATH lookup); sh reads the script, so no mode bit matters.
ENTRYPOINT ["/bin/sh", "/app/entrypoint.sh"]
