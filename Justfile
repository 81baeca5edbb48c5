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

# Write the OpenAPI document the code makes to docs/openapi.json (a test fails when stale).
openapi: build
    target/debug/surge openapi > docs/openapi.json

# Fuzz the API against its OpenAPI document (schemathesis) on a gateway of its own.
api-fuzz: setup build
    scripts/schemathesis.sh

# Render every kustomization and validate it offline (CRD schemas in ../shared/schemas).
manifests:
    python3 -m pytest tests/manifests -q

# The gate: formatting, lints, and the committed query cache matching the queries.
check: fmt-check clippy sqlx-check

fmt-check:
    cargo fmt --all -- --check

clippy:
    cargo clippy --workspace --all-targets --locked -- -D warnings

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

# Throughput and latency of a sync echo through Surge against raw lapin request/reply.
bench *ARGS: setup
    cargo build --release --workspace --bins --locked
    target/release/surge-bench --bin-dir target/release {{ARGS}}
