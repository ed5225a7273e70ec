#!/bin/sh
# The container's entrypoint: a program on PATH (Jenkins' `cat`, GitLab's `sh`) is exec'd at
# once; everything else goes to entrypoint.py (the action, atlas-ci, the usage, the errors).
#
# Why a shell first: Jenkins' docker.image().inside runs `docker run ... IMAGE cat` and at once
# `docker top`, and logs an ERROR unless the process is already `cat`. Python takes 90-180 ms
# to start and hand over; dash execs within a millisecond and forks nothing on this path.
#
# Dispatch (docs/ci.md, "Plain docker run"):
#   upload, search, serve, registry, -anything, or no arguments -> entrypoint.py (atlas-ci, or
#     the action when GITHUB_ACTIONS=true and there are no arguments);
#   a path (holds a /) to an executable file, or a name found on PATH -> exec'd;
#   anything else -> entrypoint.py, which says what went wrong (126/127).
set -f # $PATH is split on ":" below; its parts must not be globbed

PYTHON=/usr/local/bin/python
ENTRYPOINT_PY=${0%/*}/entrypoint.py

if [ $# -gt 0 ]; then
  case $1 in
    upload | search | serve | registry | -*) ;;
    */*)
      if [ -f "$1" ] && [ -x "$1" ]; then exec "$@"; fi
      ;;
    *)
      # PATH lookup without a fork (`command -v` in $(...) would fork a subshell).
      rest=$PATH:
      while [ -n "$rest" ]; do
        dir=${rest%%:*}
        rest=${rest#*:}
        candidate=${dir:-.}/$1
        if [ -f "$candidate" ] && [ -x "$candidate" ]; then exec "$@"; fi
      done
      ;;
  esac
fi

# -I: PYTHONPATH and other PYTHON* variables a CI job sets cannot change what is imported.
exec "$PYTHON" -I "$ENTRYPOINT_PY" "$@"
