-- Surge's whole data model (DESIGN.md, "Data" and "Identity"). Every time is timestamptz (UTC);
-- every lookup path has an index. Identity tables are created now so later features only add rows.

-- One user within one tenant (an OIDC provider), identified by email.
CREATE TABLE entity (
    id          uuid        PRIMARY KEY,
    tenant      text        NOT NULL CHECK (tenant <> ''),
    account     text        NOT NULL CHECK (account <> ''),
    -- the provider's `sub` at first login: a later login with the same email but another sub is refused
    subject     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entity_tenant_account_key UNIQUE (tenant, account)
);

-- Optional per-source profiles of an entity (pc, mobile, api, ...).
CREATE TABLE entity_persona (
    id          uuid        PRIMARY KEY,
    entity_id   uuid        NOT NULL REFERENCES entity (id) ON DELETE CASCADE,
    source      text        NOT NULL CHECK (source <> ''),
    other       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entity_persona_entity_source_key UNIQUE (entity_id, source)
);

CREATE TYPE auth_state AS ENUM ('active', 'revoked');
CREATE TYPE auth_kind AS ENUM ('api_key', 'login');

-- One issued token (an API key or a login session). Only a hash of the secret is stored.
CREATE TABLE auth (
    id          uuid        PRIMARY KEY,
    entity_id   uuid        NOT NULL REFERENCES entity (id) ON DELETE CASCADE,
    kind        auth_kind   NOT NULL,
    granted     timestamptz NOT NULL DEFAULT now(),
    -- lifetime in seconds from `granted`; 0 means the token never expires
    seconds     bigint      NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    state       auth_state  NOT NULL DEFAULT 'active',
    token_hash  bytea       NOT NULL,
    persona_id  uuid        REFERENCES entity_persona (id) ON DELETE SET NULL,
    label       text,
    revoked_at  timestamptz,
    CONSTRAINT auth_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX auth_entity_id_idx ON auth (entity_id);
CREATE INDEX auth_persona_id_idx ON auth (persona_id);

-- The ID-token claims and groups seen when an auth row was issued.
CREATE TABLE auth_claims (
    auth_id     uuid        NOT NULL REFERENCES auth (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    value       jsonb       NOT NULL,
    PRIMARY KEY (auth_id, name)
);

CREATE TABLE auth_groups (
    auth_id     uuid        NOT NULL REFERENCES auth (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    PRIMARY KEY (auth_id, name)
);

-- Server settings: one row per name, versioned for optimistic concurrency (If-Match).
CREATE TABLE settings (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (name <> ''),
    value       jsonb       NOT NULL,
    version     bigint      NOT NULL DEFAULT 1,
    updated_by  uuid        REFERENCES entity (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT settings_name_key UNIQUE (name)
);

CREATE TYPE job_state AS ENUM ('queued', 'running', 'succeeded', 'failed', 'dead');

-- Every accepted call. `id` is a UUIDv7 (time-ordered), so keyset pagination by id is by creation.
CREATE TABLE job (
    id               uuid        PRIMARY KEY,
    -- NULL for events a trusted producer published straight to the broker
    owner_id         uuid        REFERENCES entity (id) ON DELETE CASCADE,
    function         text        NOT NULL,
    state            job_state   NOT NULL DEFAULT 'queued',
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    idempotency_key  text,
    -- the request event's `source` and `id`: a job's identity on the bus, for exactly-once
    event_source     text        NOT NULL,
    event_id         text        NOT NULL,
    input            jsonb,
    result           jsonb,
    -- the final problem (RFC 9457) of a failed or dead job
    error            jsonb,
    -- every failed attempt's problem, oldest first (kept across replays)
    attempt_errors   jsonb       NOT NULL DEFAULT '[]'::jsonb,
    trace_parent     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_event_key UNIQUE (event_source, event_id),
    CONSTRAINT job_terminal_has_finished_at CHECK (
        (state IN ('queued', 'running')) = (finished_at IS NULL))
);
CREATE UNIQUE INDEX job_owner_idempotency_key ON job (owner_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX job_owner_id_idx ON job (owner_id, id DESC);
CREATE INDEX job_function_state_idx ON job (function, state, id);

-- The `sleep` function's effect: one row per run it completes, written in the job's own
-- transaction. No unique constraint on purpose: the tests count rows to prove exactly-once.
CREATE TABLE sleep_run (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      uuid        NOT NULL,
    slept_ms    bigint      NOT NULL,
    ran_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sleep_run_job_id_idx ON sleep_run (job_id);
