#!/usr/bin/env bash
# Runs Surge on this machine: the gateway and one process per function, on the local
# RabbitMQ and Postgres, after applying migrations. Ctrl-C stops everything (SIGTERM, so
# in-flight jobs finish). Expects `cargo build --workspace --bins` to have run (just up does).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SURGE_BIN_DIR:-target/debug}
state=.surge
mkdir -p "$state/logs"

# A development API key, made once and kept out of git (.surge/ is ignored).
if [ ! -s "$state/dev-api-key" ]; then
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$state/dev-api-key")
fi
export SURGE_DEV__API_KEY="$(cat "$state/dev-api-key")"
export SURGE_DATABASE__URL=${SURGE_DATABASE__URL:-postgres://postgres@127.0.0.1:5432/surge}
export SURGE_BROKER__URL=${SURGE_BROKER__URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export SURGE_HTTP__ADDR=${SURGE_HTTP__ADDR:-127.0.0.1:8080}
functions=${SURGE_FUNCTIONS:-echo,sleep}
export SURGE_FUNCTIONS="$functions"

"$bin/surge" migrate

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
}
trap stop INT TERM EXIT

"$bin/surge" gateway > >(tee "$state/logs/gateway.log") 2>&1 &
pids+=($!)
for f in ${functions//,/ }; do
  "$bin/surge-$f" > "$state/logs/$f.log" 2>&1 &
  pids+=($!)
done

for _ in $(seq 100); do
  curl -fsS "http://$SURGE_HTTP__ADDR/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
cat >&2 <<MSG

Surge is up on http://$SURGE_HTTP__ADDR  (functions: $functions; logs in $state/logs/)
Development API key: $SURGE_DEV__API_KEY   (also in $state/dev-api-key)

  curl -s -X POST http://$SURGE_HTTP__ADDR/jobs/echo -H "X-API-Key: \$(cat $state/dev-api-key)" \\
       -H 'content-type: application/json' -d '{"hello":"world"}'

Ctrl-C stops it.
MSG
wait
