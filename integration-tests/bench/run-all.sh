#!/usr/bin/env bash
# Reproduces BENCHMARKS.md's figures on this machine, one section after the
# other (about 15 minutes after the builds). Needs what CI installs (moto in
# .venv, Debian's wrk for the HTTP comparisons).
#   integration-tests/bench/run-all.sh [--builds]
# --builds also times the cold builds (fresh target directories, about 25
# minutes more).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=integration-tests/bench/scripts
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }

if [ "${1:-}" = "--builds" ]; then
  echo "## cold builds"
  for spec in "lite:-p provisioner --no-default-features --bin provision" "workspace:--workspace --bins"; do
    name=${spec%%:*}; args=${spec#*:}
    dir=$(mktemp -d)
    start=$(date +%s)
    # shellcheck disable=SC2086
    CARGO_TARGET_DIR="$dir" cargo build --release --locked $args > /dev/null 2>&1
    echo "$name ($args): $(( $(date +%s) - start )) s"
    rm -rf "$dir"
  done
fi

cargo build --release --locked --workspace --bins
echo "## ingest"
"$scripts/ingest.sh" 10
echo "## processor"
target/release/procbench --store sqlite --events 400000
echo "## freshness"
"$scripts/freshness.sh" 5000 150
echo "## import"
"$scripts/import.sh" 100000
"$scripts/import.sh" 100000 --concurrency 8
echo "## GraphQL queries"
target/release/querybench queries --store sqlite --events 1000000
echo "## provision on moto"
EVENT_PLATFORM_MOTO_SERVER=$PWD/.venv/bin/moto_server \
  cargo bench -p provisioner --bench stack --profile dev -- --delay-ms 100
echo "## service start"
bash integration-tests/service-start.sh 10
