#!/usr/bin/env bash
# Runs Surge on this machine, on the local RabbitMQ and Postgres, after applying migrations:
# the gateway (with its push scaler) and the local scaler, which starts and stops function
# processes as KEDA would from the ScaledObjects in keda/base. Ctrl-C stops everything
# (SIGTERM, so in-flight jobs finish). Expects `cargo build --workspace --bins` (just up does).
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
# Locally the development key is an admin (of tenant `dev`), so it opens the console too.
export SURGE_DEV__ADMIN=${SURGE_DEV__ADMIN:-true}
export SURGE_DATABASE__URL=${SURGE_DATABASE__URL:-postgres://postgres@127.0.0.1:5432/surge}
export SURGE_BROKER__URL=${SURGE_BROKER__URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export SURGE_HTTP__ADDR=${SURGE_HTTP__ADDR:-127.0.0.1:8080}

export SURGE_SCALER__ADDR=${SURGE_SCALER__ADDR:-127.0.0.1:9090}
export SURGE_SCALER__MANAGEMENT_URL=${SURGE_SCALER__MANAGEMENT_URL:-http://guest:guest@127.0.0.1:15672}

"$bin/surge" migrate

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
  # Stopping on request is a clean end, not a failure.
  exit 0
}
trap stop INT TERM EXIT

# Two local OpenID providers (tests/idp/idp.mjs, npm oidc-provider) as the tenants `local`
# and `partner`. Test users: alice (admin), bob, carol (unverified email); any password.
# Client secrets are made once and kept in .surge/, like the development key.
idp_ports=(${SURGE_UP_IDP_PORTS:-4001 4002})
tenants=()
i=0
for tenant in local partner; do
  port=${idp_ports[$i]}; i=$((i + 1))
  if [ ! -s "$state/idp-$tenant-secret" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$state/idp-$tenant-secret")
  fi
  secret=$(cat "$state/idp-$tenant-secret")
  IDP_PORT=$port IDP_PATH=/$tenant IDP_CLIENT_ID=surge-$tenant IDP_CLIENT_SECRET=$secret \
    IDP_REDIRECT_URIS=http://$SURGE_HTTP__ADDR/callback \
    node tests/idp/idp.mjs > "$state/logs/idp-$tenant.log" 2>&1 &
  pids+=($!)
  tenants+=("{name=\"$tenant\", issuer=\"http://127.0.0.1:$port/$tenant\", client_id=\"surge-$tenant\", client_secret=\"$secret\", redirect_url=\"http://$SURGE_HTTP__ADDR/callback\", admin_group=\"admins\", accept_bearer=true}")
done
export SURGE_TENANTS="[$(IFS=,; echo "${tenants[*]}")]"
# alice of `local` runs the platform (server settings); `partner`'s admins manage their own.
export SURGE_IDENTITY__OPERATOR_TENANTS=${SURGE_IDENTITY__OPERATOR_TENANTS:-'["local"]'}


"$bin/surge" gateway > "$state/logs/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS "http://$SURGE_HTTP__ADDR/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
if ! curl -fsS "http://$SURGE_HTTP__ADDR/readyz" >/dev/null 2>&1; then
  echo "the gateway is not ready after 10 s; the end of $state/logs/gateway.log:" >&2
  tail -n 20 "$state/logs/gateway.log" >&2
  exit 1
fi
cat >&2 <<MSG

Surge is up on http://$SURGE_HTTP__ADDR  (logs in $state/logs/)
Functions start from zero when work arrives and go back to zero after their cooldown
(capped at ${SURGE_UP_MAX_COOLDOWN:-30} s here), as the ScaledObjects in keda/base say.
Development API key: $SURGE_DEV__API_KEY   (also in $state/dev-api-key)

Operations console: http://$SURGE_HTTP__ADDR/console  (log in as alice, an admin of local,
or paste the development API key below)

Log in (users alice = admin, bob, carol = unverified; any password) and get an API key:
  http://$SURGE_HTTP__ADDR/token?tenant=local      http://$SURGE_HTTP__ADDR/token?tenant=partner

  curl -s -X POST http://$SURGE_HTTP__ADDR/jobs/echo -H "X-API-Key: \$(cat $state/dev-api-key)" \\
       -H 'content-type: application/json' -d '{"hello":"world"}'

Scaler status as JSON: http://127.0.0.1:9091/status     Ctrl-C stops everything.
MSG
# Time to read the above before the scaler's live table takes the terminal.
sleep 2
# The local scaler in the foreground: its live view is what `just up` shows.
"$bin/surge" scaler --manifests keda/base --bin-dir "$bin" --push "http://$SURGE_SCALER__ADDR" \
  --max-cooldown "${SURGE_UP_MAX_COOLDOWN:-30}" --log-dir "$state/logs" &
pids+=($!)
wait
