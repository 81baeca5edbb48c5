#!/usr/bin/env bash
# Idempotent set-up of this machine for Surge's run, test and bench commands:
# the local Postgres and RabbitMQ running, and the tools the recipes call installed.
# Safe to run any number of times; does nothing that is already done.
set -euo pipefail

say() { echo "setup: $*" >&2; }

# Debian's (or Ubuntu's) packages, as root.
install_packages() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Postgres (127.0.0.1:5432, trust, user postgres) ---
if ! command -v pg_isready >/dev/null 2>&1 || [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql)" ]; then
  say "installing PostgreSQL (the distribution's postgresql package; a minute, once)"
  install_packages postgresql
  # A cluster made here is for local development on loopback: the postgres user connects
  # without a password from this machine only, as the quick start and the tests expect.
  version=$(ls /etc/postgresql | sort -n | tail -1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main restart || true
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  version=$(ls /etc/postgresql | sort -n | tail -1)
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { say "PostgreSQL does not answer on 127.0.0.1:5432"; exit 1; }

# --- RabbitMQ (127.0.0.1:5672, guest/guest: the guest user works on loopback only) ---
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  say "installing RabbitMQ (the distribution's rabbitmq-server package; a minute, once)"
  install_packages rabbitmq-server
fi
if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  say "starting RabbitMQ"
  rabbitmq-server -detached
  for _ in $(seq 120); do rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
rabbitmq-diagnostics -q ping >/dev/null 2>&1 || { say "RabbitMQ does not answer"; exit 1; }
# The management API gives queued *and* in-flight counts (the push scaler and KEDA's
# `protocol: http` read it); the plugin ships with the server and only needs enabling.
if ! rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1; then
  say "enabling the RabbitMQ management plugin"
  rabbitmq-plugins -q enable rabbitmq_management >/dev/null
fi
for _ in $(seq 60); do
  curl -fsS -o /dev/null -u guest:guest http://127.0.0.1:15672/api/overview 2>/dev/null && break
  sleep 0.5
done
curl -fsS -o /dev/null -u guest:guest http://127.0.0.1:15672/api/overview 2>/dev/null \
  || { say "RabbitMQ's management API does not answer on 127.0.0.1:15672"; exit 1; }

# --- Python packages for the manifest checks, the CloudEvents interop client and the
# benchmark's Celery baseline (pinned) ---
# Redis: the shared rate-limit store (limits.store_url) the tests run against.
if ! command -v redis-server >/dev/null 2>&1; then
  say "installing Redis (the distribution's redis-server package, once)"
  install_packages redis-server
fi
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  say "starting Redis"
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes >/dev/null
  for _ in $(seq 40); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.25; done
fi
redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || { say "Redis does not answer on 127.0.0.1:6379"; exit 1; }

if ! python3 -c 'import pytest, yaml, jsonschema, kubernetes_validate, cloudevents.core, schemathesis, celery' >/dev/null 2>&1; then
  say "installing the tests' Python packages"
  python3 -m pip install --quiet --disable-pip-version-check \
    -r "$(dirname "$0")/../tests/manifests/requirements.txt" \
    -r "$(dirname "$0")/../tests/clients/requirements.txt" \
    -r "$(dirname "$0")/../tests/api/requirements.txt" \
    -r "$(dirname "$0")/../tests/bench/celery/requirements.txt"
fi

# --- test identity providers and the browser that logs in through them ---
idp="$(dirname "$0")/../tests/idp"
if [ ! -d "$idp/node_modules/oidc-provider" ] || [ "$idp/package-lock.json" -nt "$idp/node_modules/.package-lock.json" ]; then
  say "installing the test identity providers (npm ci in tests/idp)"
  npm ci --prefix "$idp" --no-audit --no-fund --loglevel=error >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
  say "installing Debian's chromium (headless browser tests; a minute or two, once)"
  install_packages chromium
fi
# promtool (Debian's prometheus package) checks and unit-tests the alert rules (tests/manifests).
# Only the tool is wanted: the package's postinst starts a Prometheus server where services may
# start (containers' policy-rc.d refuses it); stop and disable such a server at once.
if ! command -v promtool >/dev/null 2>&1 || [ ! -x /usr/bin/prometheus ]; then
  say "installing Debian's prometheus package (promtool, for the alert rule tests)"
  install_packages prometheus
  if systemctl is-active --quiet prometheus 2>/dev/null; then
    say "stopping the Prometheus server the package started"
    systemctl disable --now --quiet prometheus
  elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    say "stopping the Prometheus server the package started"
    /etc/init.d/prometheus stop >/dev/null
  fi
fi

# --- tools ---
if ! command -v cargo-nextest >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
if ! command -v cargo-machete >/dev/null 2>&1; then
  say "installing cargo-machete (unused dependency check; about 3 minutes, once)"
  cargo install cargo-machete --locked --version 0.9.2
fi
if [ "${SURGE_SETUP_SQLX:-0}" = 1 ] && ! command -v sqlx >/dev/null 2>&1; then
  say "installing sqlx-cli (about 2 minutes, once)"
  cargo install sqlx-cli --version 0.9.0 --no-default-features --features postgres,rustls
fi
