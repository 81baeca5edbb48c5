#!/usr/bin/env bash
# PostgreSQL servers of their own on this machine, beside (never instead of) the machine's
# cluster on 5432: for fault runs (`just chaos` restarts its own) and for a primary with a
# streaming replica (`database.replica_url`). Debian's PostgreSQL binaries; as root the servers
# run as the postgres user.
#
#   scripts/postgres-nodes.sh start DIR PORT            a primary in DIR/primary on PORT (trust
#                                                       on loopback, replication allowed)
#   scripts/postgres-nodes.sh replica DIR PORT          a streaming replica of DIR's primary
#                                                       in DIR/replica on PORT
#   scripts/postgres-nodes.sh restart DIR [primary|replica]   fast restart
#   scripts/postgres-nodes.sh stop DIR [primary|replica]      stop (both, and remove DIR)
set -euo pipefail

say() { echo "postgres-nodes: $*" >&2; }
bin=/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -n | tail -1)/bin

as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

serve() { # DIR NAME PORT
  as_postgres "$bin/pg_ctl -D '$1/$2' -w -t 60 -l '$1/$2.log' \
    -o \"-p $3 -k '$1' -c listen_addresses=127.0.0.1 -c max_connections=200\" start" >/dev/null
}

case "${1:-}" in
  start)
    dir=$2 port=$3
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    as_postgres "$bin/initdb -D '$dir/primary' -A trust -U postgres >/dev/null"
    echo 'host replication all 127.0.0.1/32 trust' >> "$dir/primary/pg_hba.conf"
    echo "$port" > "$dir/primary.port"
    serve "$dir" primary "$port"
    echo "primary postgres://postgres@127.0.0.1:$port"
    ;;
  replica)
    dir=$2 port=$3
    primary=$(cat "$dir/primary.port")
    as_postgres "$bin/pg_basebackup -h 127.0.0.1 -p $primary -U postgres -D '$dir/replica' -R -X stream"
    echo "$port" > "$dir/replica.port"
    serve "$dir" replica "$port"
    echo "replica postgres://postgres@127.0.0.1:$port"
    ;;
  restart)
    dir=$2 name=${3:-primary}
    as_postgres "$bin/pg_ctl -D '$dir/$name' -w -t 60 -m fast restart >/dev/null"
    ;;
  stop)
    dir=$2
    names=${3:-replica primary}
    for name in $names; do
      [ -d "$dir/$name" ] && as_postgres "$bin/pg_ctl -D '$dir/$name' -w -t 30 -m fast stop >/dev/null" || true
    done
    [ -z "${3:-}" ] && rm -rf "$dir"
    true
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
