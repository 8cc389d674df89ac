#!/usr/bin/env bash
# Installs moto's S3 server (moto[server]==5.2.5) in a Python venv for the
# object-store tests. Idempotent: quick when the venv already has it.
# Location: $AUDIT_MOTO_VENV, default $HOME/.cache/deferred-audit/moto-venv.
set -euo pipefail

MOTO_VERSION="5.2.5"
VENV="${AUDIT_MOTO_VENV:-${HOME:-/root}/.cache/deferred-audit/moto-venv}"

if [ -x "$VENV/bin/moto_server" ] \
  && "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  exit 0
fi

if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing python3-venv" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >/dev/null
  else
    echo "python3 with the venv module is required for moto's S3 server" >&2
    exit 1
  fi
fi

echo "installing moto[server]==$MOTO_VERSION into $VENV" >&2
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
"$VENV/bin/moto_server" --help >/dev/null
