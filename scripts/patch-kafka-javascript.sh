#!/usr/bin/env bash
# Applies patches/kafka-javascript-null-headers.patch to the installed @confluentinc/kafka-javascript and
# rebuilds it (from source, CKJS_LINKING=dynamic), so null header values survive a produce and a consume
# (docs/headers.md, "Null and empty header values"). Run by scripts/setup.sh after npm ci.
#
# Idempotent: an applied patch is detected (it reverses cleanly) and not applied twice; the rebuild runs only
# when the loaded binding does not export the patch's marker. Fails loudly when the package is not the
# version the patch was written for, when its files differ from that version's (the patch must apply with
# no fuzz), or when the rebuilt binding still lacks the marker.
#
#   scripts/patch-kafka-javascript.sh                      # the installed package: patch, rebuild, verify
#   scripts/patch-kafka-javascript.sh --source-only DIR    # only patch the sources in DIR (tests)
set -euo pipefail
cd "$(dirname "$0")/.."

want_version=1.10.1
patch_file="$PWD/patches/kafka-javascript-null-headers.patch"
marker_check="process.exit(require('@confluentinc/kafka-javascript/librdkafka.js').lifelineNullHeaders === 1 ? 0 : 1)"

fail() {
  echo "patch-kafka-javascript: $*" >&2
  exit 1
}

command -v patch >/dev/null 2>&1 || fail "the patch(1) tool is missing (apt-get install patch)"
source_only=false
if [ "${1:-}" = "--source-only" ]; then
  [ $# -eq 2 ] || fail "usage: $0 [--source-only DIR]"
  source_only=true
  dir=$2
else
  [ $# -eq 0 ] || fail "usage: $0 [--source-only DIR]"
  dir=$(node -p "require('node:path').dirname(require.resolve('@confluentinc/kafka-javascript/package.json'))") ||
    fail "@confluentinc/kafka-javascript is not installed: run npm ci first"
fi
version=$(node -p "require(process.argv[1]).version" "$(cd "$dir" && pwd)/package.json") || fail "no package.json in $dir"
[ "$version" = "$want_version" ] ||
  fail "@confluentinc/kafka-javascript is $version, the patch was written for $want_version: check whether $version keeps null header values apart (docs/headers.md), then update or drop $patch_file and this check"

if patch -d "$dir" -p1 -F0 -R --dry-run --silent <"$patch_file" >/dev/null 2>&1; then
  echo "patch-kafka-javascript: null-header patch already applied in $dir"
elif patch -d "$dir" -p1 -F0 --dry-run --silent <"$patch_file" >/dev/null 2>&1; then
  patch -d "$dir" -p1 -F0 --silent --no-backup-if-mismatch <"$patch_file"
  echo "patch-kafka-javascript: applied the null-header patch to $dir"
else
  patch -d "$dir" -p1 -F0 --dry-run <"$patch_file" >&2 || true
  fail "the files of @confluentinc/kafka-javascript $version in $dir differ from what $patch_file expects (see above): refusing to guess"
fi

if [ "$source_only" = true ]; then
  exit 0
fi
if node -e "$marker_check" 2>/dev/null; then
  echo "patch-kafka-javascript: the loaded binding is the patched build"
  exit 0
fi
echo "patch-kafka-javascript: rebuilding @confluentinc/kafka-javascript from source (a few minutes)"
# From the project whose node_modules holds the binding (this package may itself be a dependency there).
# --build-from-source: without it node-pre-gyp keeps the binary it finds and builds nothing.
(cd "$dir/../../.." && CKJS_LINKING=dynamic npm rebuild @confluentinc/kafka-javascript --build-from-source --no-audit --no-fund >&2)
node -e "$marker_check" || fail "rebuilt @confluentinc/kafka-javascript, but it does not export lifelineNullHeaders: the patched sources were not built"
echo "patch-kafka-javascript: rebuilt; the binding keeps null header values"
