#!/bin/sh
# The system prerequisites of `make test`, in one place (README "Prerequisites", .ci/run).
#   scripts/prerequisites.sh           one line naming what is missing, exit 1; silent when all is there
#   scripts/prerequisites.sh --packages   the Debian packages that provide what is missing
# Chromium: the browser tests and the digests' PDF attachments (KPI_CHROMIUM overrides the path).
# PostgreSQL 15 server binaries: the warehouse tests start a throwaway cluster on 127.0.0.1.
# python3-venv: `make` creates .venv with `python3 -m venv`.
PYTHON=${PYTHON:-python3}
missing=""
packages=""
need() { missing="$missing${missing:+, }$1 ($2)"; packages="$packages${packages:+ }$3"; }

$PYTHON -c 'import venv, ensurepip' 2>/dev/null \
    || need "$PYTHON's venv module" "apt-get install -y python3-venv" python3-venv
[ -x "${KPI_CHROMIUM:-/usr/bin/chromium}" ] \
    || need "Chromium at ${KPI_CHROMIUM:-/usr/bin/chromium}" "apt-get install -y chromium" chromium
[ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/pg_ctl ] \
    || need "PostgreSQL 15 server binaries" "apt-get install -y postgresql-15" postgresql-15

if [ "${1:-}" = "--packages" ]; then
    [ -n "$packages" ] && echo "$packages"
    exit 0
fi
if [ -n "$missing" ]; then
    echo "make test needs: $missing; see README 'Prerequisites'" >&2
    exit 1
fi
