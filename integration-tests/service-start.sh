#!/usr/bin/env bash
# How long each service binary takes from exec to a 200 on /health/ready
# (what the load balancer and the container health check wait for), with a
# broker on loopback from `provision dev` and the embedded stores.
#   cargo build --release --locked && bash integration-tests/service-start.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin/provision" dev --data-dir "$work/dev" > "$work/dev.log" 2>&1 &
for _ in $(seq 100); do
  broker=$(awk '$1 == "broker:" {print $2}' "$work/dev.log")
  [ -n "$broker" ] && break
  sleep 0.1
done
[ -n "$broker" ] || { cat "$work/dev.log"; exit 1; }

now_ms() { date +%s%3N; }

# ready SERVICE PORT ENV...: prints the milliseconds to the first 200.
ready() {
  local service=$1 port=$2; shift 2
  local start; start=$(now_ms)
  env "$@" "$bin/$service" > "$work/$service.log" 2>&1 &
  local pid=$!
  until curl -fs -o /dev/null "http://127.0.0.1:$port/health/ready"; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/$service.log"; return 1; }
    sleep 0.01
  done
  echo $(( $(now_ms) - start ))
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

common=(JWT_SECRET_KEY=bench-secret-bench-secret-bench-secret KAFKA_BOOTSTRAP_SERVERS="$broker" ENVIRONMENT=test RUST_LOG=warn)
for run in $(seq "$runs"); do
  printf 'run %s: ingest %s ms, processor %s ms, graphql %s ms\n' "$run" \
    "$(ready ingest 18100 "${common[@]}" PORT=18100)" \
    "$(ready processor 18102 "${common[@]}" METRICS_PORT=18102 HOT_STORE=sqlite SQLITE_PATH="$work/p$run.db" COLD_STORE=directory COLD_STORE_DIR="$work/raw$run" KAFKA_CONSUMER_GROUP="bench-$run")" \
    "$(ready graphql 18101 "${common[@]}" PORT=18101 HOT_STORE=sqlite SQLITE_PATH="$work/p$run.db")"
done
