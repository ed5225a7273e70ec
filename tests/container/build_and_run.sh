#!/usr/bin/env bash
# Build the real image from the Dockerfile and run it the way the GitHub runner, GitLab CI and
# Jenkins run it, on a machine with no Docker engine running and no image registry
# (docs/container-testing.md says why each step is needed):
#
#   1. apt-installs docker.io and debootstrap when missing; starts a private dockerd under a
#      temp dir (no iptables, no bridge) and stops it by its pid on exit;
#   2. builds a stand-in for python:3.12-slim-bookworm with debootstrap + this machine's pyenv
#      CPython 3.12 (or Debian's python3) from the Debian mirror of this machine's apt sources
#      (none there: a clear failure), cached as a tar in $CACHE between runs, plus the
#      pinned wheels and an /etc/pip.conf that points pip at them;
#   3. `docker build --network none` of the real Dockerfile with only BASE_IMAGE swapped;
#   4. runs it: pass-through and --help as root and as uid 1234, Jenkins' `cat` + `docker exec`,
#      `docker top` right after `docker run` showing `cat` / `sh` (Jenkins' check),
#      a hostile PYTHONPATH, the action mode as the runner starts it (/github/workspace and
#      /github/file_commands mounts, INPUT_* env); then real uploads to `atlas-ci serve` on
#      127.0.0.1.
#
# Usage: tests/container/build_and_run.sh          (root; ~60 s cold, ~15-20 s with the cache)
# Env:   CONTAINER_BASE=standin (default: the above) | real (a machine with a running Docker
#          engine that can pull, e.g. a GitHub runner: steps 1-2 skipped, the Dockerfile's own
#          base image, no root needed)
#        PYTHON=python3 (runs `pip download` and the registry; needs the package's deps)
#        CACHE=/var/cache/atlas-ci-test  KEEP=1 (keep the temp dir)
# Exit:  0 only if every check ran and held. A machine that cannot run Docker is a failure.
# shellcheck disable=SC2015 # "a && b || fail": fail when either did not hold, as meant
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${CACHE:-/var/cache/atlas-ci-test}
MODE=${CONTAINER_BASE:-standin}
PY=${PYTHON:-python3}
IMAGE=localhost/atlas-upload:test
BASE=localhost/testbase
SUITE=bookworm
LIBS=ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,zlib1g,libreadline8,libncursesw6,libuuid1,libexpat1,libnsl2,libtirpc3
STARTED=$SECONDS

say() { printf '\n== %s\n' "$*" >&2; }
fail() {
  printf '\nFAIL: %s\n' "$*" >&2
  exit 1
}
ok() { printf '   ok: %s\n' "$*" >&2; }

case "$MODE" in
  standin)
    [ "$(id -u)" = 0 ] || fail "needs root (dockerd, debootstrap); this machine cannot run the container test"
    ;;
  real)
    docker info >/dev/null 2>&1 || fail "CONTAINER_BASE=real needs a running Docker engine; none answers"
    ;;
  *) fail "CONTAINER_BASE must be standin or real, not $MODE" ;;
esac

# --- 1. tools and a private Docker engine ------------------------------------------------------

missing=""
command -v dockerd >/dev/null || missing=" docker.io"
command -v debootstrap >/dev/null || missing="$missing debootstrap"
if [ "$MODE" = standin ] && [ -n "$missing" ]; then
  say "installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086 # a list of package names
  apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; } ||
    fail "cannot install$missing with apt: this machine cannot run the container test"
fi

W=$(mktemp -d /tmp/atlas-ci-container.XXXXXX)
DOCKERD_PID=""
REGISTRY_PID=""
cleanup() {
  local code=$?
  if [ -n "$REGISTRY_PID" ]; then
    kill "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true
  fi
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
  fi
  # Layers a killed daemon left mounted would keep rm from removing the data root.
  grep -o " $W/[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
  printf '\n%s after %d s\n' "$([ $code = 0 ] && echo PASSED || echo FAILED)" $((SECONDS - STARTED)) >&2
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_dockerd() {
  say "starting a private dockerd in $W"
  dockerd --data-root "$W/docker" --exec-root "$W/dexec" -H "unix://$W/docker.sock" \
    --pidfile "$W/dockerd.pid" --iptables=false --ip6tables=false --bridge=none \
    >"$W/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  export DOCKER_HOST="unix://$W/docker.sock"
  export DOCKER_BUILDKIT=0 # the classic builder, as documented; no registry lookups
  for _ in $(seq 1 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
  docker version >/dev/null 2>&1 || {
    tail -20 "$W/dockerd.log" >&2
    fail "dockerd did not start (log above): this machine cannot run the container test"
  }
  ok "dockerd $(docker version --format '{{.Server.Version}}') pid $DOCKERD_PID"
}

# --- 2. the stand-in base image ----------------------------------------------------------------

apt_mirror() {
  # The Debian mirror apt already uses on this machine for $SUITE, from its sources only (a
  # literal host would hide a machine whose apt points at a private mirror or at nothing).
  # deb822 stanzas (*.sources: Types/URIs/Suites, Enabled: no skipped) first, then one-line
  # `deb [options] URI SUITE COMPONENTS...` entries; the first match wins.
  local file found
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    found=$(awk -v suite="$SUITE" '
      function flush() {
        if (deb && hit && on && uri != "") { print uri; done = 1; exit }
        deb = 0; hit = 0; on = 1; uri = ""
      }
      BEGIN { on = 1 }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]*#/ { next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
      tolower($1) == "enabled:" && tolower($2) == "no" { on = 0 }
      END { if (!done) flush() }
    ' "$file")
    if [ -n "$found" ]; then echo "$found" && return 0; fi
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    found=$(awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }
    ' "$file")
    if [ -n "$found" ]; then echo "$found" && return 0; fi
  done
  return 0
}

make_rootfs() { # make_rootfs ROOT PYENV_PYTHON_DIR|"" PYV MIRROR
  local root=$1 pyenv_py=$2 pyv=$3 mirror=$4
  if [ -n "$pyenv_py" ]; then
    debootstrap --variant=minbase --include="$LIBS" "$SUITE" "$root" "$mirror" >"$W/debootstrap.log" 2>&1 ||
      { tail -20 "$W/debootstrap.log" >&2; fail "debootstrap failed"; }
    # The official image's layout: CPython under /usr/local, libpython found by ld.so there
    # (the build's rpath names pyenv's tree, which the image does not have).
    tar -C "$pyenv_py" \
      --exclude="./lib/python$pyv/test" --exclude="./lib/python$pyv/idlelib" \
      --exclude="./lib/python$pyv/tkinter" --exclude="./lib/python$pyv/turtledemo" \
      --exclude="./lib/python$pyv/site-packages" --exclude='*.a' --exclude='*.opt-[12].pyc' \
      -cf - . | tar -C "$root/usr/local" -xf -
    mkdir -p "$root/usr/local/lib/python$pyv/site-packages"
    cp -a "$pyenv_py/lib/python$pyv/site-packages/"pip* "$root/usr/local/lib/python$pyv/site-packages/"
    chroot "$root" /sbin/ldconfig
    ln -sf "python$pyv" "$root/usr/local/bin/python3"
    ln -sf "python$pyv" "$root/usr/local/bin/python"
    # pyenv's pip scripts name pyenv's interpreter on their first line: write them anew.
    for name in pip pip3 "pip$pyv"; do
      printf '#!/usr/local/bin/python%s\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n' \
        "$pyv" >"$root/usr/local/bin/$name"
      chmod 755 "$root/usr/local/bin/$name"
    done
  else
    debootstrap --variant=minbase --include="$LIBS,python3,python3-pip,python-is-python3" \
      "$SUITE" "$root" "$mirror" >"$W/debootstrap.log" 2>&1 ||
      { tail -20 "$W/debootstrap.log" >&2; fail "debootstrap failed"; }
    rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
    ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  fi
  chroot "$root" /usr/local/bin/python -c 'import ssl, sqlite3, lzma, bz2, zlib, ctypes, pyexpat' &&
    chroot "$root" /usr/local/bin/python -m pip --version >/dev/null ||
    fail "the stand-in's Python or pip does not work"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
}

standin_base() {
  local pyenv_py="" pyv flavour rootfs_tar key wheels mirror
  if command -v pyenv >/dev/null; then
    pyenv_py=$(find "$(pyenv root)/versions" -maxdepth 1 -name '3.12.*' | sort -V | tail -n 1)
  fi
  if [ -n "$pyenv_py" ]; then pyv=3.12 flavour="cpython-$(basename "$pyenv_py")"; else pyv=3.11 flavour=debian-python3; fi
  rootfs_tar="$CACHE/rootfs-$SUITE-$flavour-v2.tar"
  mkdir -p "$CACHE"
  if [ ! -s "$rootfs_tar" ]; then
    mirror=$(apt_mirror)
    [ -n "$mirror" ] || fail "no Debian $SUITE mirror in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.sources and *.list): add the mirror this machine may use for $SUITE there, or run with CONTAINER_BASE=real on a machine whose Docker engine can pull"
    say "debootstrap $SUITE (minbase) from $mirror with $flavour; cached as $rootfs_tar"
    make_rootfs "$W/rootfs" "$pyenv_py" "$pyv" "$mirror"
    tar --numeric-owner -C "$W/rootfs" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$W/rootfs"
  else
    ok "cached root filesystem $rootfs_tar"
  fi

  # Wheels keyed by what they were downloaded for: a changed pin downloads again.
  key=$(cat "$REPO/requirements.txt" "$REPO/requirements-build.txt" | sha256sum | cut -c1-16)
  wheels="$CACHE/wheels-py$pyv-$key"
  if [ ! -d "$wheels" ]; then
    say "downloading the pinned wheels for Python $pyv"
    "$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: \
      --python-version "$pyv" --implementation cp --platform manylinux2014_x86_64 \
      --platform manylinux_2_28_x86_64 \
      -r "$REPO/requirements.txt" -r "$REPO/requirements-build.txt" -d "$wheels.tmp" 2>"$W/pip.log" ||
      { tail -20 "$W/pip.log" >&2; fail "pip download failed"; }
    mv "$wheels.tmp" "$wheels"
  fi

  say "importing the stand-in base image $BASE"
  docker import --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$rootfs_tar" "$BASE-root" >/dev/null
  mkdir -p "$W/basectx"
  cp -a "$wheels" "$W/basectx/wheels"
  printf '[global]\nno-index = true\nfind-links = /wheels\n' >"$W/basectx/pip.conf"
  printf 'FROM %s\nCOPY wheels /wheels\nCOPY pip.conf /etc/pip.conf\n' "$BASE-root" |
    docker build --network none -t "$BASE" -f - "$W/basectx" >"$W/base.log" 2>&1 ||
    { tail -20 "$W/base.log" >&2; fail "building the stand-in base failed"; }
  ok "$BASE (Python $(docker run --rm "$BASE" python -c 'import platform; print(platform.python_version())'))"
}

# --- 3. the real Dockerfile ---------------------------------------------------------------------

if [ "$MODE" = standin ]; then
  start_dockerd
  standin_base
  BUILD_ARGS=(--network none --build-arg "BASE_IMAGE=$BASE")
else
  ok "using the running Docker engine $(docker version --format '{{.Server.Version}}') and the Dockerfile's base"
  BUILD_ARGS=()
fi
say "docker build ${BUILD_ARGS[*]} -t $IMAGE ."
BUILD_STARTED=$SECONDS
docker build "${BUILD_ARGS[@]}" -t "$IMAGE" "$REPO" >"$W/build.log" 2>&1 ||
  { tail -30 "$W/build.log" >&2; fail "docker build failed (log above)"; }
ok "built in $((SECONDS - BUILD_STARTED)) s; $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

# --- 4. running it --------------------------------------------------------------------------------

expect() { # expect NAME WANT_CODE PATTERN -- docker args...
  local name=$1 want=$2 pattern=$3 code=0
  shift 4
  docker run --rm "$@" >"$W/out" 2>&1 || code=$?
  if [ "$code" != "$want" ] || ! grep -qE -- "$pattern" "$W/out"; then
    sed 's/^/   | /' "$W/out" >&2
    fail "$name: exit $code (wanted $want), output above should match: $pattern"
  fi
  ok "$name"
}

say "pass-through and --help"
expect "entrypoint --version" 0 '^atlas-ci [0-9]' -- "$IMAGE" --version
expect "entrypoint upload --help" 0 'usage: atlas-ci upload' -- "$IMAGE" upload --help
expect "no arguments outside GitHub: usage, exit 2" 2 'usage: atlas-ci' -- "$IMAGE"
expect "unknown program: 127" 127 'atlas-ci --help' -- "$IMAGE" no-such-program
expect "uid 1234: sh -c 'atlas-ci --help'" 0 'usage: atlas-ci' -- -u 1234:1234 "$IMAGE" sh -c 'atlas-ci --help'
expect "uid 1234 with no HOME: atlas-ci --version" 0 '^atlas-ci [0-9]' -- -u 1234:1234 -e HOME=/nonexistent "$IMAGE" atlas-ci --version
# shellcheck disable=SC2016 # expanded by the container's sh, not here
expect "GitLab without entrypoint [\"\"]: sh -c passes through" 0 '^gitlab [0-9]' -- "$IMAGE" sh -c 'echo gitlab $(atlas-ci --version | cut -d" " -f2)'

# shellcheck disable=SC2016 # expanded by the container's sh, not here
expect "bytecode compiled at build time; setuptools gone" 0 '^compiled, no setuptools$' -- --entrypoint sh "$IMAGE" -c \
  'python -I -B -c "import atlas_ci.action, importlib.util as u; assert u.find_spec(\"setuptools\") is None; print(atlas_ci.action.__cached__)" | xargs test -f && echo "compiled, no setuptools"'

mkdir -p "$W/evil/atlas_ci" "$W/evil/yaml"
echo 'raise SystemExit("HIJACKED by PYTHONPATH")' | tee "$W/evil/atlas_ci/__init__.py" >"$W/evil/yaml/__init__.py"
expect "control: the hostile PYTHONPATH does hijack a plain python" 1 'HIJACKED' -- -e PYTHONPATH=/evil -v "$W/evil:/evil:ro" --entrypoint /usr/local/bin/python "$IMAGE" -c 'import atlas_ci'
expect "PYTHONPATH cannot reach the entrypoint" 0 '^atlas-ci [0-9]' -- -e PYTHONPATH=/evil -v "$W/evil:/evil:ro" "$IMAGE" --version
expect "PYTHONPATH cannot reach the atlas-ci script" 0 '^atlas-ci [0-9]' -- -e PYTHONPATH=/evil -v "$W/evil:/evil:ro" "$IMAGE" sh -c 'atlas-ci --version'

say "Jenkins: docker.image().inside = run -u uid cat, then docker exec"
JWS="$W/jenkins-ws"
mkdir -p "$JWS" && chmod 777 "$JWS" # writable by the agent's uid, with or without root here
CID=$(docker run -t -d -u 1234:1234 -w "$JWS" -v "$JWS:$JWS" "$IMAGE" cat)
docker exec "$CID" sh -c 'atlas-ci --version && echo "HOME=$HOME uid=$(id -u)"' >"$W/out" 2>&1 ||
  { cat "$W/out" >&2; fail "docker exec in the cat container"; }
docker rm -f "$CID" >/dev/null
grep -q '^atlas-ci [0-9]' "$W/out" || fail "Jenkins-style exec printed: $(cat "$W/out")"
ok "cat kept the container up; docker exec ran atlas-ci as uid 1234"

say "Jenkins and GitLab: the container's process is cat / sh right after docker run (5 runs each)"
# Jenkins runs `docker run -t -d ... IMAGE cat`, then at once `docker top` and logs "ERROR: The
# container started but didn't run the expected command" unless the process is cat. The
# entrypoint's own shell shows as `/bin/sh /app/entrypoint.sh cat` until it execs, Python as
# `python ...`: only the bare command passes.
top_args() { docker top "$1" -eo pid,args | awk 'NR > 1 { $1 = ""; sub(/^ /, ""); print }'; }
for i in 1 2 3 4 5; do
  CID=$(docker run -t -i -d -u 1234:1234 -w "$JWS" -v "$JWS:$JWS" "$IMAGE" cat)
  seen=$(top_args "$CID")
  docker rm -f "$CID" >/dev/null
  [ "$seen" = cat ] || fail "run $i: docker top right after docker run showed '$seen', not cat (Jenkins would log a false ERROR)"
  CID=$(docker run -i -d "$IMAGE" sh)
  seen=$(top_args "$CID")
  docker rm -f "$CID" >/dev/null
  [ "$seen" = sh ] || fail "run $i: docker top right after docker run showed '$seen', not sh"
done
ok "docker top right after docker run: cat (-t -i -d, uid 1234) and sh, 5 runs each"

say "GitHub: the runner's docker run, inputs missing"
WS="$W/workspace" FC="$W/file_commands"
mkdir -p "$WS" "$FC"
github_run() { # github_run EXTRA_DOCKER_ARGS... ; the runner's own flags
  docker run --rm --network host --workdir /github/workspace \
    -e GITHUB_ACTIONS=true -e CI=true -e HOME=/github/home \
    -e GITHUB_WORKSPACE=/github/workspace \
    -e GITHUB_OUTPUT=/github/file_commands/output \
    -e GITHUB_STEP_SUMMARY=/github/file_commands/summary \
    -v "$WS:/github/workspace" -v "$FC:/github/file_commands" "$@"
}
code=0
github_run -e INPUT_TOKEN=tok-container-0001 -e INPUT_DRY_RUN=false "$IMAGE" >"$W/out" 2>&1 || code=$?
[ "$code" = 2 ] || { cat "$W/out" >&2; fail "action without the artifact input: exit $code, wanted 2"; }
[ "$(head -n 1 "$W/out")" = "::add-mask::tok-container-0001" ] || fail "the mask is not the first line: $(head -n 1 "$W/out")"
grep -q '^::error title=atlas-ci%3A configuration::the artifact input is not set' "$W/out" ||
  { cat "$W/out" >&2; fail "no configuration annotation"; }
grep -q '### Atlas upload failed' "$FC/summary" || fail "no error summary in \$GITHUB_STEP_SUMMARY"
code=0
github_run -e INPUT_TOKEN=t0k-0002 -e INPUT_ARTIFACT=acme/web -e "INPUT_DRY_RUN=yes" "$IMAGE" >"$W/out" 2>&1 || code=$?
[ "$code" = 2 ] && grep -q "input 'dry_run' is 'yes'" "$W/out" || { cat "$W/out" >&2; fail "a bad boolean input"; }
ok "mask first, ::error:: annotation, error summary, exit 2 (root, /github mounts)"

# --- 5. uploads against a real registry ----------------------------------------------------------

core_ready() {
  (cd "$REPO" && "$PY" -c 'import atlas_ci.upload, atlas_ci.manifest, atlas_ci.archive, atlas_ci.plan, atlas_ci.registry.serve') 2>/dev/null
}
core_ready || fail "the upload core or the registry cannot be imported by $PY"

say "uploads to atlas-ci serve on 127.0.0.1"
TOKEN="tok-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
(cd "$REPO" && exec "$PY" -m atlas_ci serve --host 127.0.0.1 --port 0 --data "$W/registry" \
  "--token=$TOKEN" >"$W/registry.url" 2>"$W/registry.log") &
REGISTRY_PID=$!
for _ in $(seq 1 100); do [ -s "$W/registry.url" ] && break; sleep 0.1; done
URL=$(head -n 1 "$W/registry.url")
case "$URL" in http://*) ok "registry at $URL" ;; *) cat "$W/registry.log" >&2; fail "registry did not start" ;; esac

# A Packer run's output in the workspace: a small gzip'd tar .box and its manifest.
mkdir -p "$WS/output-vbox"
"$PY" - "$WS" <<'EOF'
import gzip, io, json, os, sys, tarfile
ws = sys.argv[1]
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w") as tf:
    for name, data in (("metadata.json", b'{"provider": "virtualbox"}'), ("disk", os.urandom(1 << 20))):
        info = tarfile.TarInfo(name); info.size = len(data); tf.addfile(info, io.BytesIO(data))
open(f"{ws}/output-vbox/web.box", "wb").write(gzip.compress(raw.getvalue(), 6))
build = {"name": "web", "builder_type": "virtualbox-iso", "build_time": 1700000000,
         "files": [{"name": "output-vbox/web.box", "size": 0}], "artifact_id": "virtualbox",
         "packer_run_uuid": "r1"}
json.dump({"builds": [build], "last_run_uuid": "r1"}, open(f"{ws}/packer-manifest.json", "w"))
EOF
SHA=$(sha256sum "$WS/output-vbox/web.box" | cut -d' ' -f1)
# Owned as on a CI host (not by root), readable and writable by the uid-1234 run below.
if [ "$(id -u)" = 0 ]; then chown -R 1234:1234 "$WS"; fi
chmod -R a+rwX "$WS"
: >"$FC/output"

github_run -e "INPUT_TOKEN=$TOKEN" -e INPUT_ARTIFACT=acme/web -e "INPUT_ATLAS_URL=$URL" \
  -e INPUT_MANIFEST=packer-manifest.json -e INPUT_DRY_RUN=false \
  -e "INPUT_METADATA=$(printf 'team: infra\nversion: 1.10')" "$IMAGE" >"$W/out" 2>&1 ||
  { cat "$W/out" >&2; fail "the action's upload failed"; }
grep -qx "version=1" "$FC/output" && grep -qx "file_sha256=$SHA" "$FC/output" &&
  grep -qx "id=acme/web/vagrant.box/1" "$FC/output" ||
  { cat "$W/out" "$FC/output" >&2; fail "outputs after the action's upload"; }
# The token may appear once: in the ::add-mask:: line that comes before anything else.
[ "$(grep -c "$TOKEN" "$W/out")" = 1 ] && [ "$(head -n 1 "$W/out")" = "::add-mask::$TOKEN" ] ||
  fail "the token reached the log beyond the single ::add-mask:: line"
[ -z "$(find "$WS" -uid 0)" ] || fail "the action left root-owned files in the workspace: $(find "$WS" -uid 0)"
ok "action as root: version=1, file_sha256 matches, no token in the log, workspace untouched"

JSON=$(docker run --rm --network host -u 1234:1234 -e HOME=/nonexistent -e "ATLAS_TOKEN=$TOKEN" \
  -w "$WS" -v "$WS:$WS" "$IMAGE" sh -c \
  "atlas-ci upload --artifact acme/web --atlas-url $URL --metadata provider=virtualbox --json") ||
  fail "atlas-ci upload as uid 1234 failed"
case "$JSON" in *'"version":2'*"$SHA"*) ok "atlas-ci upload as uid 1234 (Jenkins/GitLab style): version 2" ;;
  *) fail "atlas-ci upload as uid 1234 printed: $JSON" ;; esac
