#!/usr/bin/env bash
# (Re)creates a database with Surge's schema for sqlx's compile-time query checks.
set -euo pipefail
name=$1
psql -h 127.0.0.1 -U postgres -qtA -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
psql -h 127.0.0.1 -U postgres -qtA -c "CREATE DATABASE \"$name\"" >/dev/null
for f in "$(dirname "$0")"/../migrations/*.sql; do
  psql -h 127.0.0.1 -U postgres -d "$name" -qtA -v ON_ERROR_STOP=1 -f "$f" >/dev/null
done
