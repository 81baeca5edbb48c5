#!/usr/bin/env bash
# Fuzzes the running gateway against its own OpenAPI document with schemathesis (PyPI): every
# documented operation, valid and invalid inputs, with an admin API key. Fails on any 5xx, any
# status, header, media type or body the document does not declare. Starts its own gateway and
# the functions on a fresh database and broker prefix, and removes them afterwards.
# Reports: target/schemathesis/{junit.xml,run.json,run.har}; prints requests sent and failures.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SURGE_BIN_DIR:-target/debug}
st=$(command -v schemathesis || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/schemathesis")
out=target/schemathesis
rm -rf "$out"; mkdir -p "$out/logs"
say() { echo "schemathesis: $*" >&2; }

run="st$(date +%s)$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
export SURGE_DATABASE__URL=postgres://postgres@127.0.0.1:5432/surge_$run
export SURGE_DATABASE__MAX_CONNECTIONS=8
export SURGE_BROKER__URL=amqp://guest:guest@127.0.0.1:5672/%2f
export SURGE_BROKER__PREFIX=$run-
export SURGE_HTTP__ADDR=127.0.0.1:$port
# An admin key, so the settings writes are exercised too; no rate limit (the fuzzer is fast).
export SURGE_DEV__API_KEY=$key SURGE_DEV__ADMIN=true
export SURGE_LIMITS__PER_SECOND=0
# Functions answer in milliseconds; a fuzzed `sleep` input must not hold the run.
export SURGE_HTTP__SYNC_TIMEOUT_MS=2000 SURGE_HTTP__MAX_WAIT_MS=2000
export SURGE_TELEMETRY__LOG_FILTER=warn

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${SURGE_FUZZ_KEEP:-}" ] || psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS surge_$run WITH (FORCE)" >/dev/null 2>&1 || true
  for q in echo sleep settings; do
    for name in "fn.$q" "fn.$q.dead"; do
      curl -fsS -o /dev/null -u guest:guest -X DELETE "http://127.0.0.1:15672/api/queues/%2f/$run-$name" || true
    done
  done
  for x in surge.jobs surge.dead surge.events; do
    curl -fsS -o /dev/null -u guest:guest -X DELETE "http://127.0.0.1:15672/api/exchanges/%2f/$run-$x" || true
  done
}
trap cleanup EXIT

"$bin/surge" migrate > "$out/logs/migrate.log" 2>&1 || { cat "$out/logs/migrate.log" >&2; exit 1; }
"$bin/surge" gateway > "$out/logs/gateway.log" 2>&1 &
pids+=($!)
for f in echo sleep settings; do
  "$bin/surge-$f" > "$out/logs/$f.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://$SURGE_HTTP__ADDR/readyz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://$SURGE_HTTP__ADDR/readyz" \
  || { say "the gateway is not ready; its log:"; tail -20 "$out/logs/gateway.log" >&2; exit 1; }

say "fuzzing http://$SURGE_HTTP__ADDR (every operation but /ws, which is not HTTP)"
status=0
"$st" --config-file tests/api/schemathesis.toml run "http://$SURGE_HTTP__ADDR/openapi.json" \
  --url "http://$SURGE_HTTP__ADDR" -H "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --phases examples,coverage,fuzzing --max-examples "${SURGE_FUZZ_EXAMPLES:-25}" --seed 42 \
  --request-timeout 10 --workers 2 --no-color --exclude-path /ws \
  --report junit,json,har --report-junit-path "$out/junit.xml" \
  --report-json-path "$out/run.json" --report-har-path "$out/run.har" \
  > "$out/output.txt" 2>&1 || status=$?
python3 - "$out" <<'PY' || say "no report to summarise"
import json, sys
out = sys.argv[1]
har = json.load(open(f"{out}/run.har"))["log"]["entries"]
report = json.load(open(f"{out}/run.json"))
by_status = {}
for e in har:
    by_status[e["response"]["status"]] = by_status.get(e["response"]["status"], 0) + 1
failures = {f["code"]: f["count"] for f in report.get("failures", [])}
print(f"schemathesis: {len(har)} requests sent, "
      f"{sum(n for s, n in by_status.items() if s >= 500)} with 5xx, "
      f"{report['test_cases'].get('with_failures', 0)} test cases failed {failures or ''}; "
      f"statuses {dict(sorted(by_status.items()))}", file=sys.stderr)
PY
if [ "$status" != 0 ]; then
  say "failed (exit $status); the run's output:"
  tail -80 "$out/output.txt" >&2
  exit 1
fi
