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
. integration-tests/bench/scripts/dev.sh
start_dev 18090 freshness
"$bin/querybench" freshness --url http://127.0.0.1:18090 --token "$token" --rate "$rate" --probes "$probes"
echo "provision dev peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
