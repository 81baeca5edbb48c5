#!/usr/bin/env bash
# Removes what killed test and benchmark runs left on the machine's services: their queues and
# exchanges (names `t<32 hex>-…`, `bench-t<32 hex>-…`) and their databases (`t<32 hex>`). A
# test cleans up after itself when it ends; a run killed mid-test (a timeout, Ctrl-C) cannot.
# Never run it while tests are running: it would take their queues and databases away.
set -uo pipefail
api=${SURGE_TEST_MANAGEMENT:-http://guest:guest@127.0.0.1:15672}/api
pattern='^(bench-)?t[0-9a-f]{32}-'
removed=0
for kind in queues exchanges; do
  names=$(curl -fsS "$api/$kind/%2f?columns=name" | python3 -c 'import json,sys; print("\n".join(q["name"] for q in json.load(sys.stdin)))')
  for name in $(grep -E "$pattern" <<<"$names"); do
    curl -fsS -X DELETE "$api/$kind/%2f/$name" >/dev/null && removed=$((removed + 1))
  done
done
for db in $(psql -h 127.0.0.1 -U postgres -qtAc "SELECT datname FROM pg_database WHERE datname ~ '^t[0-9a-f]{32}$'"); do
  psql -h 127.0.0.1 -U postgres -qtAc "DROP DATABASE \"$db\" WITH (FORCE)" >/dev/null && removed=$((removed + 1))
done
echo "removed $removed queues, exchanges and databases left by killed test runs" >&2
