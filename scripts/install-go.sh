#!/usr/bin/env bash
# Installs Go and the golang.org/x/mod sources (Debian packages golang-go and
# golang-golang-x-mod-dev) that audit-core's independent implementation check
# (audit-core/tests/go_reference.rs, audit-cli/tests/transparency.rs; the program is audit-testkit/go/checker.go) uses to verify our tree checkpoints and
# proofs with Go's reference sumdb/note and sumdb/tlog, offline, in GOPATH
# mode. Idempotent; quick when already installed.
set -euo pipefail

XMOD=/usr/share/gocode/src/golang.org/x/mod/sumdb/tlog
if command -v go >/dev/null 2>&1 && [ -d "$XMOD" ]; then
  exit 0
fi

echo "install-go: go or $XMOD not found; installing golang-go and golang-golang-x-mod-dev with apt-get" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends golang-go golang-golang-x-mod-dev
