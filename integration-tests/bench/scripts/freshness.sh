#!/usr/bin/env bash
# Freshness in `provision dev`: from a probe's 202 to its first appearance in
# GraphQL's latestEvents, under a steady background load.
#   cargo build --release --locked --workspace --bins
#   integration-tests/bench/scripts/freshness.sh [RATE] [PROBES]
set -euo pipefail
cd "$(dirname "$0")/../../.."
rate=${1:-5000}; probes=${2:-150}
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
"$bin/provision" dev --port 18090 --data-dir "$work/dev" > "$work/dev.log" 2>&1 &
pid=$!
until curl -fs -o /dev/null http://127.0.0.1:18090/health/ready; do
  kill -0 $pid 2>/dev/null || { cat "$work/dev.log"; exit 1; }
  sleep 0.2
done
token=$(ENVIRONMENT=development "$bin/provision" token --subject freshness 2>/dev/null)
"$bin/querybench" freshness --url http://127.0.0.1:18090 --token "$token" --rate "$rate" --probes "$probes"
echo "provision dev peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
