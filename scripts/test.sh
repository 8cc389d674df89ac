#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need
# (PostgreSQL server binaries, a Python venv with moto's S3 server), then
# runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

for installer in scripts/install-*.sh; do
  [ -e "$installer" ] && bash "$installer"
done

exec cargo test --workspace --all-features "$@"
