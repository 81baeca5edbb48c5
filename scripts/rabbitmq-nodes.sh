#!/usr/bin/env bash
# RabbitMQ nodes of their own on this machine, beside (never instead of) the default node on
# 5672: one node, or a cluster of three, for fault runs (`just chaos`) and to try Surge the way
# it runs against a cluster. Debian's rabbitmq-server package; run as root (the server's
# wrapper switches to the rabbitmq user, who must own every directory it writes).
#
#   scripts/rabbitmq-nodes.sh start DIR COUNT BASE   nodes <name>-1..COUNT@localhost on AMQP
#                                                    ports BASE+1.., management 10000+BASE+i,
#                                                    clustered when COUNT > 1; prints one
#                                                    "node NAME AMQP MANAGEMENT" line each
#   scripts/rabbitmq-nodes.sh stop DIR               stops them and removes DIR
#   scripts/rabbitmq-nodes.sh kill DIR I             SIGKILL node I (what a crash does)
#   scripts/rabbitmq-nodes.sh revive DIR I           starts node I again with its data
#
# The nodes share the machine's Erlang cookie, so `rabbitmqctl -n NAME` reaches each of them.
set -euo pipefail

say() { echo "rabbitmq-nodes: $*" >&2; }

node_env() { # DIR I -> the environment node I runs with
  local dir=$1 i=$2 name base
  name=$(cat "$dir/name")
  base=$(cat "$dir/base")
  echo RABBITMQ_NODENAME="$name-$i@localhost" RABBITMQ_NODE_PORT=$((base + i)) \
    RABBITMQ_DIST_PORT=$((20000 + base + i)) RABBITMQ_CONFIG_FILE="$dir/n$i/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/n$i/enabled_plugins" RABBITMQ_MNESIA_BASE="$dir/n$i/mnesia" \
    RABBITMQ_LOG_BASE="$dir/n$i/log" RABBITMQ_PID_FILE="$dir/n$i/pid"
}

start_node() { # DIR I
  # shellcheck disable=SC2046
  env $(node_env "$1" "$2") rabbitmq-server -detached >/dev/null 2>&1
}

await_node() { # NODE: registered (a detached node takes seconds to), then booted
  local node=$1
  for _ in $(seq 120); do
    rabbitmqctl -q -n "$node" ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  timeout 60 rabbitmqctl -q -n "$node" await_startup >/dev/null 2>&1
}

case "${1:-}" in
  start)
    dir=$2 count=$3 base=$4
    [ "$count" -ge 1 ] || { say "COUNT must be at least 1"; exit 2; }
    mkdir -p "$dir"
    name="surge$(basename "$dir" | tr -cd 'a-z0-9' | tail -c 12)"
    echo "$name" > "$dir/name"
    echo "$base" > "$dir/base"
    echo "$count" > "$dir/count"
    for i in $(seq "$count"); do
      d=$dir/n$i
      mkdir -p "$d"
      cat > "$d/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$((base + i))
management.tcp.port = $((10000 + base + i))
management.tcp.ip = 127.0.0.1
loopback_users = none
EOF
      echo '[rabbitmq_management].' > "$d/enabled_plugins"
    done
    chown -R rabbitmq:rabbitmq "$dir"
    for i in $(seq "$count"); do start_node "$dir" "$i"; done
    for i in $(seq "$count"); do
      await_node "$name-$i@localhost" \
        || { say "node $name-$i did not start; its log: $dir/n$i/log"; exit 1; }
    done
    for i in $(seq 2 "$count"); do
      rabbitmqctl -q -n "$name-$i@localhost" stop_app >/dev/null
      rabbitmqctl -q -n "$name-$i@localhost" join_cluster "$name-1@localhost" >/dev/null
      rabbitmqctl -q -n "$name-$i@localhost" start_app >/dev/null
    done
    for i in $(seq "$count"); do
      echo "node $name-$i@localhost $((base + i)) $((10000 + base + i))"
    done
    ;;
  stop)
    dir=$2
    [ -f "$dir/name" ] || exit 0
    name=$(cat "$dir/name")
    count=$(cat "$dir/count")
    for i in $(seq "$count"); do
      timeout 30 rabbitmqctl -q -n "$name-$i@localhost" stop >/dev/null 2>&1 || true
      [ -f "$dir/n$i/pid" ] && kill -9 "$(cat "$dir/n$i/pid")" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
  kill)
    dir=$2 i=$3
    kill -9 "$(cat "$dir/n$i/pid")"
    ;;
  revive)
    dir=$2 i=$3
    name=$(cat "$dir/name")
    start_node "$dir" "$i"
    await_node "$name-$i@localhost"
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
