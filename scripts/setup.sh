#!/usr/bin/env bash
# One-time (and idempotent) set-up for a fresh machine: Java + Maven for the local Kafka broker, the
# compression libraries librdkafka builds against, Prometheus (prometheus + promtool: the alert-rule tests
# and the Prometheus end-to-end test), and the npm dependencies (the Kafka client is built from source: its
# prebuilt-binary download cannot work without GitHub access), then Lifeline's patch of the Kafka client
# (scripts/patch-kafka-javascript.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v java >/dev/null 2>&1 || need_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_pkgs+=(maven)
# postgresql: the server binaries `lifeline rehearse` starts a private instance from (pg_config --bindir);
# iproute2: `ip netns` for the rehearsal's partition and latency faults; chromium: headless screenshots of
# the rehearsal's HTML report (docs/rehearsal.md).
for pkg in libzstd-dev liblz4-dev libsasl2-dev libssl-dev zlib1g-dev patch postgresql iproute2 chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (${need_pkgs[*]}); install them as root, continuing without" >&2
  fi
fi

# Prometheus's server and promtool (Debian's package; without its recommends: no node exporter daemons).
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian package: prometheus"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "setup: missing Debian package prometheus (promtool, prometheus); install it as root, continuing without" >&2
  fi
fi

# npm ci only when the lock file changed since the last install (the second command stays fast).
stamp=node_modules/.lifeline-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci, Lifeline's patch of the Kafka client, then one build of it from source (about 2-4 minutes)"
  # Install scripts wait until the binding's sources are patched, so it is built once, patched.
  CKJS_LINKING=dynamic npm ci --ignore-scripts --no-audit --no-fund
  bash scripts/patch-kafka-javascript.sh --source-only node_modules/@confluentinc/kafka-javascript
  CKJS_LINKING=dynamic npm rebuild --no-audit --no-fund
  echo "$want" > "$stamp"
fi
node -e "require('@confluentinc/kafka-javascript')" || { echo "setup: the Kafka client did not build; see the npm ci output above" >&2; exit 1; }
# Lifeline's patch of the binding (null header values, docs/headers.md): idempotent, rebuilds only when needed.
bash scripts/patch-kafka-javascript.sh
