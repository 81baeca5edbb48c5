# Every workflow a person runs. `bash scripts/just <recipe>` works on a fresh machine.

set shell := ["bash", "-euo", "pipefail", "-c"]

export SQLX_OFFLINE := "true"

# List the recipes.
default:
    @just --list

# Make this machine ready: services running, tools installed (idempotent).
setup:
    scripts/setup.sh

# Run Surge locally: migrations, the gateway and one process per function.
up: setup build
    scripts/up.sh

# Build every binary (debug).
build:
    cargo build --workspace --bins --locked

# Apply migrations to the local database (SURGE_DATABASE__URL, default .../surge).
migrate: build
    target/debug/surge migrate

# The whole test suite: the lint gate, unit and end-to-end tests on the real services, and
# the Kubernetes manifests against the real CRD schemas.
test: setup check
    cargo build --workspace --bins --locked
    cargo nextest run --workspace --locked
    scripts/schemathesis.sh
    just manifests
    just image
    target/release/surge-chaos --bin-dir target/release --seconds 2

# Write the OpenAPI document the code makes to docs/openapi.json (a test fails when stale).
openapi: build
    target/debug/surge openapi > docs/openapi.json

# Fuzz the API against its OpenAPI document (schemathesis) on a gateway of its own.
api-fuzz: setup build
    scripts/schemathesis.sh

# Render every kustomization and validate it offline (CRD schemas in ../shared/schemas).
manifests:
    python3 -m pytest tests/manifests -q

# The gate: formatting, lints, dependencies declared where they are used, and the committed
# query cache matching the queries.
check: fmt-check clippy machete sqlx-check

fmt-check:
    cargo fmt --all -- --check

clippy:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Fails on a dependency a crate declares but does not use.
machete:
    cargo machete

# Fails when .sqlx/ is stale (a query changed without `just prepare`).
sqlx-check:
    SURGE_SETUP_SQLX=1 scripts/setup.sh
    scripts/sqlx-db.sh surge_sqlx_check
    SQLX_OFFLINE=false DATABASE_URL=postgres://postgres@127.0.0.1:5432/surge_sqlx_check cargo sqlx prepare --workspace --check

# Refresh .sqlx/ after changing a query (commit the result).
prepare:
    SURGE_SETUP_SQLX=1 scripts/setup.sh
    scripts/sqlx-db.sh surge_sqlx_check
    SQLX_OFFLINE=false DATABASE_URL=postgres://postgres@127.0.0.1:5432/surge_sqlx_check cargo sqlx prepare --workspace

fmt:
    cargo fmt --all

# Build the container image with buildah (release binaries, FROM scratch, non-root) and
# smoke-run it against the local RabbitMQ and Postgres.
image TAG="surge:dev": setup
    cargo build --release --workspace --bins --locked
    scripts/image.sh {{TAG}}

# A fault run on services of its own (loopback only): load from concurrent clients while
# workers, gateways, the broker's connections, RabbitMQ and PostgreSQL fail, alone and in a
# row; then a 10,000-job backlog. Counts lost, doubled and stranded jobs; fails on any.
# `just chaos --cluster` runs it on a three-node RabbitMQ cluster and kills the queue's leader.
chaos *ARGS: setup
    cargo build --release --workspace --bins --locked
    target/release/surge-chaos --bin-dir target/release {{ARGS}}

# A three-node RabbitMQ cluster on this machine (AMQP 5681-5683, management 15681-15683),
# beside the default node; `just cluster-stop` removes it. Point Surge at it with
# SURGE_BROKER__URL=amqp://guest:guest@127.0.0.1:5681/%2f,amqp://guest:guest@127.0.0.1:5682/%2f,amqp://guest:guest@127.0.0.1:5683/%2f
cluster: setup
    scripts/rabbitmq-nodes.sh start .surge/rabbitmq-cluster 3 5680

cluster-stop:
    scripts/rabbitmq-nodes.sh stop .surge/rabbitmq-cluster

# The job store at scale: the job path and reads with tens of millions of finished jobs in
# the job table against an empty one, and the time to drop a day's partition.
# The gateway's memory with this many idle, subscribed websockets (release build).
bench-ws SOCKETS="10000": setup
    cargo build --release --workspace --bins --locked
    target/release/surge-bench --bin-dir target/release --ws-idle {{SOCKETS}}

bench-scale ROWS="20000000": setup
    cargo build --release --workspace --bins --locked
    target/release/surge-bench --bin-dir target/release --callers 64 --scale-rows {{ROWS}}

# Remove the queues, exchanges and databases that killed test runs left behind (never while
# tests run).
clean-test-leftovers:
    scripts/clean-test-leftovers.sh

# Where the CPU goes at 64 callers: CPU seconds per process and each process's hottest
# symbols (release binaries with symbols kept; needs perf, Debian's linux-perf).
bench-profile: setup
    cargo build --profile bench --workspace --bins --locked
    scripts/profile-bench.sh

# Throughput and latency of a sync echo through Surge against raw lapin request/reply.
bench *ARGS: setup
    cargo build --release --workspace --bins --locked
    target/release/surge-bench --bin-dir target/release {{ARGS}}
