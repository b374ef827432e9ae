#!/usr/bin/env bash
# `provision import` into a fresh `provision dev`: a CSV of ROWS rows (1% bad),
# sent with the default batch size and concurrency; prints the import's own
# summary line (rows/s) and how long the stores took to hold every good row.
#   cargo build --release --locked --workspace --bins
#   integration-tests/bench/scripts/import.sh [ROWS] [extra import flags]
set -euo pipefail
cd "$(dirname "$0")/../../.."
rows=${1:-100000}; shift || true
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
python3 - "$rows" > "$work/history.csv" <<'PY'
import sys, uuid
n = int(sys.argv[1])
print("event_id,occurred_at,user_id,event_type,properties_json")
for i in range(n):
    minute = i % (6 * 24 * 60)
    when = "2026-11-0%dT%02d:%02d:00Z" % (1 + minute // 1440, minute // 60 % 24, minute % 60)
    kind = "" if i % 100 == 17 else "page_view"
    print('%s,%s,user-%d,%s,"{""n"": %d}"' % (uuid.UUID(int=(0x01900000000070008000 << 48) | i), when, i % 500, kind, i))
PY
. integration-tests/bench/scripts/dev.sh
start_dev 18091 importer
start=$(date +%s.%N)
"$bin/provision" import "$work/history.csv" --url http://127.0.0.1:18091 --token "$token" --quiet "$@"
query='{"query":"{ eventCount(from: \"2026-11-01T00:00:00Z\", to: \"2026-11-08T00:00:00Z\", bucket: HOUR) { total } }"}'
good=$(( rows - rows / 100 ))
until [ "$(curl -fs http://127.0.0.1:18091/graphql -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$query" | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["eventCount"]["total"])')" = "$good" ]; do
  sleep 0.2
done
echo "stored: $good events counted $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s after the import started"
