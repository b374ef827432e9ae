#!/usr/bin/env bash
# `provision run-local` on moto (BENCHMARKS.md): the time from `provision
# apply` of blueprints/local.toml on a fresh moto and registry to the first
# 202 through run-local's load balancer, then single events/s through the
# load balancer and straight to the ingest task, with loadgen. Run as root
# (chroot) after `cargo build --release --bin provision --bin ingest
# --bin processor --bin graphql --bin loadgen`, with moto installed by
# integration-tests/run-all-tests.sh; ports 5000, 5001 and 18080 must be free.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=/tmp/rl-bench; rm -rf $W; mkdir -p $W/state
MOTO_IAM_LOAD_MANAGED_POLICIES=true .venv/bin/moto_server -H 127.0.0.1 -p 5000 > $W/moto.log 2>&1 &
MOTO=$!
sed "s#/tmp/event-platform-registry#$W/registry#" blueprints/local-registry.yml > $W/registry.yml
docker-registry serve $W/registry.yml > $W/registry.log 2>&1 &
REG=$!
# The rate limit (10,000 events/s per subject) off, so loadgen measures throughput.
cp blueprints/local.toml $W/local.toml
sed -i 's/^\[services.ingest\]$/[services.ingest]\nenv = { RATE_LIMIT_EVENTS_PER_SECOND = "0" }/' $W/local.toml
sleep 2
trap 'kill -INT $RL 2>/dev/null; sleep 5; kill $MOTO $REG 2>/dev/null' EXIT
start=$(date +%s.%N)
./target/release/provision apply -b $W/local.toml --state-dir $W/state --auto-approve --binaries target/release > $W/apply.log 2>&1
applied=$(date +%s.%N)
./target/release/provision run-local -b $W/local.toml --state-dir $W/state --port 18080 > $W/run-local.log 2>&1 &
RL=$!
SECRET=$(.venv/bin/python -c "import boto3; c=boto3.client('ssm', endpoint_url='http://127.0.0.1:5000', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test'); n=[p['Name'] for p in c.describe_parameters()['Parameters'] if 'ep-local' in p['Name']][0]; print(c.get_parameter(Name=n, WithDecryption=True)['Parameter']['Value'])")
TOKEN=$(JWT_SECRET_KEY="$SECRET" ./target/release/provision token --subject bench)
until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"event_type":"x","user_id":"u"}' http://127.0.0.1:18080/events)" = 202 ]; do sleep 0.05; [ $(date +%s) -lt $(( ${start%.*} + 120 )) ] || { echo "no 202"; exit 1; }; done
first=$(date +%s.%N)
echo "apply: $(echo "$applied - $start" | bc) s; first 202: $(echo "$first - $start" | bc) s after apply started"
for target in 18080 8000; do
  for c in 64 32; do
    ./target/release/loadgen --url http://127.0.0.1:$target --token "$TOKEN" --connections $c --duration-secs 10 | tail -3
  done
done
