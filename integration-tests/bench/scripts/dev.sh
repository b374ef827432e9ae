# Sourced by the benchmark scripts: starts the release `provision dev` on
# PORT with a fresh data directory under $work, waits until it is ready,
# and sets `pid` (the process) and `token` (a development JWT for SUBJECT).
#   start_dev PORT SUBJECT
start_dev() {
  target/release/provision dev --port "$1" --data-dir "$work/dev" > "$work/dev.log" 2>&1 &
  pid=$!
  until curl -fs -o /dev/null "http://127.0.0.1:$1/health/ready"; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/dev.log"; exit 1; }
    sleep 0.2
  done
  token=$(ENVIRONMENT=development target/release/provision token --subject "$2" 2>/dev/null)
}
