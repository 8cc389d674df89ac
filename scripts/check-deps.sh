#!/usr/bin/env bash
# Fails when a direct dependency is a semver-incompatible release behind
# the newest one on crates.io, unless deps-reasons.toml says why.
#
# The dependencies checked: every entry of [workspace.dependencies] with a
# version (path-only entries are ours), and every registry dependency any
# workspace member declares (from `cargo metadata`, so a member's own
# `version = …` spec is covered too). "Behind" compares the compatibility
# key of the required version with that of the newest release, as cargo's
# caret requirements do: the major from 1.0 on (2 → 3), the minor below it
# (0.37 → 0.43), the patch below 0.1 (0.0.3 → 0.0.4). A newer compatible
# release (1.2 → 1.5) is `cargo update`'s business, not this check's.
#
# The newest release is asked of the registry with `cargo info`, run in an
# empty folder (in the workspace it answers the locked version). When the
# registry cannot be reached the script says so and exits 2; behind
# without a reason exits 1; all current (or with a reason) exits 0.
#
# Usage: scripts/check-deps.sh [--reasons FILE]
#   DEPS_CHECK_JOBS   parallel lookups (default 8)
#   DEPS_CHECK_TIMEOUT seconds per lookup (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."

reasons_file=deps-reasons.toml
while [ $# -gt 0 ]; do
  case "$1" in
    --reasons) reasons_file="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-deps: unknown argument $1" >&2; exit 2 ;;
  esac
done
jobs="${DEPS_CHECK_JOBS:-8}"
per_lookup="${DEPS_CHECK_TIMEOUT:-30}"

for tool in cargo jq timeout; do
  command -v "$tool" >/dev/null || { echo "check-deps: needs $tool on PATH" >&2; exit 2; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/empty" "$work/answers"

# name<TAB>requirement, one per distinct pair.
{
  # [workspace.dependencies]: `name = "req"` or `name = { version = "req", … }`
  # on one line, as this workspace writes them.
  awk '
    /^\[/ { in_section = ($0 == "[workspace.dependencies]"); next }
    in_section && /^[A-Za-z0-9_-]+[ \t]*=/ {
      name = $0; sub(/[ \t]*=.*/, "", name)
      rest = $0; sub(/^[^=]*=[ \t]*/, "", rest)
      if (rest ~ /^"/) { req = rest; gsub(/"/, "", req); sub(/[ \t]*#.*/, "", req); print name "\t" req }
      else if (rest ~ /version[ \t]*=[ \t]*"/ && rest !~ /path[ \t]*=/) {
        req = rest; sub(/.*version[ \t]*=[ \t]*"/, "", req); sub(/".*/, "", req); print name "\t" req
      }
    }' Cargo.toml
  # Every member's registry dependencies (normal, dev and build).
  if ! cargo metadata --no-deps --format-version 1 --offline 2>"$work/metadata.err" \
      | jq -r '.packages[].dependencies[]
               | select(.source != null and (.source | startswith("registry+")))
               | "\(.name)\t\(.req)"'; then
    echo "check-deps: cargo metadata failed:" >&2
    cat "$work/metadata.err" >&2
    exit 2
  fi
} | sed 's/^\^//; s/\t\^/\t/' | sort -u > "$work/wanted"

cut -f1 "$work/wanted" | sort -u > "$work/names"
count="$(wc -l < "$work/names")"
echo "check-deps: asking crates.io for the newest release of $count direct dependencies"

# One lookup: writes answers/NAME (the newest version) or answers/NAME.err.
lookup() {
  local name="$1" out
  if out="$(cd "$work/empty" && CARGO_NET_RETRY=1 CARGO_HTTP_TIMEOUT=15 \
      timeout "$per_lookup" cargo info --quiet "$name" 2>&1)"; then
    # `version: 0.43.0` or `version: 0.43.0 (latest 0.44.0)` when the
    # newest needs a newer toolchain.
    local line
    line="$(printf '%s\n' "$out" | grep -m1 '^version:' || true)"
    if [[ "$line" =~ latest\ ([^\ \)]+) ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}" > "$work/answers/$name"
    elif [[ "$line" =~ ^version:\ ([^\ ]+) ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}" > "$work/answers/$name"
    else
      printf 'no version in the answer: %s\n' "$out" > "$work/answers/$name.err"
    fi
  else
    printf '%s\n' "${out:-timed out after ${per_lookup}s}" > "$work/answers/$name.err"
  fi
}
export -f lookup
export work per_lookup

# One lookup first: an unreachable registry fails once, quickly, not once
# per dependency.
probe="$(head -n 1 "$work/names")"
lookup "$probe"
if [ -e "$work/answers/$probe.err" ]; then
  echo "check-deps: cannot ask the registry about $probe; is crates.io (or the configured" >&2
  echo "registry) reachable from here? Nothing was checked. cargo said:" >&2
  grep -v '^[[:space:]]*$' "$work/answers/$probe.err" | sed 's/^/  /' >&2
  exit 2
fi
tail -n +2 "$work/names" | xargs -r -P "$jobs" -I{} bash -c 'lookup "$1"' _ {}

failed=()
for file in "$work"/answers/*.err; do
  [ -e "$file" ] || continue
  failed+=("$(basename "$file" .err): $(grep -v '^[[:space:]]*$' "$file" | tail -n 3 | tr '\n' ' ')")
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "check-deps: could not learn the newest release of ${#failed[@]} of $count dependencies;" >&2
  echo "is crates.io (or the configured registry) reachable from here? Nothing was checked." >&2
  printf '  %s\n' "${failed[@]:0:5}" >&2
  if [ "${#failed[@]}" -gt 5 ]; then echo "  … and $((${#failed[@]} - 5)) more" >&2; fi
  exit 2
fi

# The compatibility key of a version (first version in a requirement):
# "M 0 0" from 1.0 on, "0 m 0" below, "0 0 p" below 0.1.
key() {
  local version="${1#[=~<>]}"
  version="${version#[=]}"
  version="${version%%,*}"
  version="${version// /}"
  local major minor patch
  IFS=. read -r major minor patch <<< "${version%%[-+]*}"
  major="${major:-0}"; minor="${minor:-0}"; patch="${patch:-0}"
  [[ "$major$minor$patch" =~ ^[0-9]+$ ]] || { echo "x"; return; }
  if [ "$major" -gt 0 ]; then echo "$major 0 0"
  elif [ "$minor" -gt 0 ]; then echo "0 $minor 0"
  else echo "0 0 $patch"; fi
}

# Whether key $1 is below key $2.
below() {
  local a b
  read -r -a a <<< "$1"
  read -r -a b <<< "$2"
  for i in 0 1 2; do
    if [ "${a[$i]}" -lt "${b[$i]}" ]; then return 0; fi
    if [ "${a[$i]}" -gt "${b[$i]}" ]; then return 1; fi
  done
  return 1
}

# The written reason for NAME in the reasons file, if any.
reason_for() {
  [ -f "$reasons_file" ] || return 0
  awk -v want="$1" '
    /^[ \t]*#/ || /^[ \t]*$/ { next }
    {
      name = $0; sub(/[ \t]*=.*/, "", name); gsub(/^[ \t"]+|[ \t"]+$/, "", name)
      if (name != want) next
      reason = $0; sub(/^[^=]*=[ \t]*"/, "", reason); sub(/"[ \t]*(#.*)?$/, "", reason)
      print reason; exit
    }' "$reasons_file"
}

behind_unexplained=()
behind_explained=()
current=()
while IFS=$'\t' read -r name req; do
  newest="$(cat "$work/answers/$name")"
  have="$(key "$req")"
  if [ "$have" = x ]; then
    behind_unexplained+=("$name: requirement \"$req\" not understood")
    continue
  fi
  if [[ "$newest" == *-* ]]; then
    current+=("$name")  # only a pre-release is newer: not a release to follow yet
    continue
  fi
  if below "$have" "$(key "$newest")"; then
    reason="$(reason_for "$name")"
    if [ -n "$reason" ]; then
      behind_explained+=("$name $req -> $newest: $reason")
    else
      behind_unexplained+=("$name $req -> $newest")
    fi
  else
    current+=("$name")
  fi
done < "$work/wanted"

if [ -f "$reasons_file" ]; then
  while read -r listed; do
    [ -n "$listed" ] || continue
    if ! printf '%s\n' "${behind_explained[@]}" | grep -q "^$listed "; then
      echo "check-deps: note: $reasons_file gives a reason for $listed, which is not behind (any more?): remove it"
    fi
  done < <(awk '/^[ \t]*#/ || /^[ \t]*$/ { next } { n = $0; sub(/[ \t]*=.*/, "", n); gsub(/^[ \t"]+|[ \t"]+$/, "", n); print n }' "$reasons_file")
fi

if [ "${#behind_explained[@]}" -gt 0 ]; then
  echo "check-deps: behind the newest release, with a reason in $reasons_file:"
  printf '  %s\n' "${behind_explained[@]}"
fi
if [ "${#behind_unexplained[@]}" -gt 0 ]; then
  echo "check-deps: behind the newest release WITHOUT a reason:" >&2
  printf '  %s\n' "${behind_unexplained[@]}" >&2
  echo "move to the newest release, or add \`name = \"why\"\` to $reasons_file" >&2
  exit 1
fi
current_count=0
if [ "${#current[@]}" -gt 0 ]; then current_count="$(printf '%s\n' "${current[@]}" | sort -u | wc -l)"; fi
echo "check-deps: ok ($current_count current, ${#behind_explained[@]} behind with a reason)"
