#!/usr/bin/env bash
# Ingest throughput and latency: the release ingest against the mock broker
# in its own process, single events and batches from loadgen, and the same
# server's no-op endpoint (/health/live) from wrk beside wrk's single events.
#   cargo build --release --locked --workspace --bins
#   integration-tests/bench/scripts/ingest.sh [SECONDS]
# Extra environment for ingest (e.g. KAFKA_LINGER_MS=2) passes through.
set -euo pipefail
cd "$(dirname "$0")/../../.."
secs=${1:-10}
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

"$bin/mock-broker" > "$work/broker.addr" 2> "$work/broker.log" &
for _ in $(seq 100); do [ -s "$work/broker.addr" ] && break; sleep 0.1; done
port=18000
ENVIRONMENT=development KAFKA_BOOTSTRAP_SERVERS=$(head -1 "$work/broker.addr") \
  PORT=$port RATE_LIMIT_EVENTS_PER_SECOND=0 RUST_LOG=warn "$bin/ingest" > "$work/ingest.log" 2>&1 &
pid=$!
until curl -fs -o /dev/null "http://127.0.0.1:$port/health/ready"; do sleep 0.1; done
url=http://127.0.0.1:$port
TOKEN=$(ENVIRONMENT=development "$bin/provision" token --subject bench --ttl-secs 3600)
export TOKEN
lua="$(dirname "$0")/../wrk/event.lua"

echo "== idle RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
for c in 64 32; do
  echo "== loadgen: single events, $c connections, flat out"
  "$bin/loadgen" --url "$url" --token "$TOKEN" --connections $c --duration-secs "$secs" --server-pid $pid
done
echo "== loadgen: batches of 100, 16 connections, flat out"
"$bin/loadgen" --url "$url" --token "$TOKEN" --connections 16 --batch 100 --duration-secs "$secs" --server-pid $pid
echo "== loadgen: single events, paced at 10,000/s"
"$bin/loadgen" --url "$url" --token "$TOKEN" --connections 64 --rate 10000 --duration-secs "$secs" --server-pid $pid
for c in 64 32; do
  echo "== wrk: GET /health/live (no-op), $c connections"
  wrk -t1 -c$c -d"${secs}s" --latency "$url/health/live" | grep -E "Requests/sec|50%|99%|Non-2xx"
  echo "== wrk: POST /events single events, $c connections"
  wrk -t1 -c$c -d"${secs}s" --latency -s "$lua" "$url/events" | grep -E "Requests/sec|50%|99%|non-202"
done
echo "== ingest peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
