#!/usr/bin/env bash
# CI check of the container image, without a Docker engine: the image builds
# from exactly its Docker build context.
#
#   1. materialises the build context into a fresh temporary folder from
#      .dockerignore, with Docker's rules (scripts/docker_context.py: a port of
#      moby/patternmatcher and BuildKit's context walk, self-tested first);
#   2. reads the Dockerfile's stages and runs them there
#      (scripts/docker_context.py build): each COPY copies from that context
#      only (a file .dockerignore leaves out fails as `docker build` would),
#      each RUN of the builder stage runs as written in its WORKDIR, so
#      `cargo build --release --locked` sees only the files the Dockerfile
#      copied (stubs included); the runtime stage's COPY sources must exist;
#   3. runs the binary the runtime stage copied (`--version`).
#
# Dependencies cargo compiled for an earlier run are reused from
# ${DOCKER_CONTEXT_CHECK_CACHE:-target/docker-context-check} (linked as the
# stage's target/; the workspace crates are compiled anew every run), with the
# usual CARGO_HOME registry. --clean empties that cache first (a cold build, as
# in `docker build --no-cache`).
#
# Usage: scripts/docker-context-check.sh [--clean] [--keep]
#   --keep   leave the temporary folder (context and stage file systems)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

cache_dir="${DOCKER_CONTEXT_CHECK_CACHE:-${CARGO_TARGET_DIR:-${repo_root}/target}/docker-context-check}"
clean=0
keep=0
for argument in "$@"; do
    case "$argument" in
        --clean) clean=1 ;;
        --keep) keep=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "docker-context-check: unknown argument $argument" >&2; exit 2 ;;
    esac
done

log() { printf '[docker-context-check] %s\n' "$*" >&2; }

started=$SECONDS
work="$(mktemp -d "${TMPDIR:-/tmp}/docker-context-check.XXXXXX")"
cleanup() {
    if [ "$keep" -eq 1 ]; then
        log "left ${work}"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

if [ "$clean" -eq 1 ]; then
    log "emptying the dependency cache ${cache_dir}"
    rm -rf "$cache_dir"
fi

python3 scripts/docker_context.py selftest

log "materialising the build context from .dockerignore into ${work}/context"
python3 scripts/docker_context.py materialise . "${work}/context" >"${work}/context-files.txt"
log "build context: $(wc -l <"${work}/context-files.txt") files, $(du -sh "${work}/context" | cut -f1)"
# Whatever the patterns say, these must never be sent to a Docker daemon.
for never in .git .stack .venv .venv-onex target tests benches Dockerfile .dockerignore; do
    if [ -e "${work}/context/${never}" ]; then
        log "FAIL: the build context contains ${never}"
        exit 1
    fi
done
if grep -E '(^|/)(target|\.stack)/|\.log$' "${work}/context-files.txt"; then
    log "FAIL: build outputs, dev credentials or logs in the build context (above)"
    exit 1
fi

log "running the Dockerfile's stages in ${work}/rootfs (dependency cache ${cache_dir})"
python3 scripts/docker_context.py build "${work}/context" Dockerfile "${work}/rootfs" --target-cache "$cache_dir"

# The runtime stage is the last one; its binary must run.
runtime_root="$(find "${work}/rootfs" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -n | tail -n 1)"
binary="${work}/rootfs/${runtime_root}/usr/local/bin/onex-vault-adapter"
[ -x "$binary" ] || { log "FAIL: the runtime stage has no /usr/local/bin/onex-vault-adapter"; exit 1; }
"$binary" --version
for copied in app/contract.yaml app/models/schemas/vault-request.schema.json; do
    [ -f "${work}/rootfs/${runtime_root}/${copied}" ] || { log "FAIL: the runtime stage has no /${copied}"; exit 1; }
done

log "PASS: the image's stages build from exactly the build context ($((SECONDS - started))s)"
