#!/usr/bin/env bash
# Installs the PostgreSQL server binaries the tests need (initdb, pg_ctl,
# psql) unless they are already there, on PATH or in
# /usr/lib/postgresql/*/bin. Idempotent; quick when already installed.
set -euo pipefail

if command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  exit 0
fi

echo "install-postgres: initdb not found; installing PostgreSQL with apt-get" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
