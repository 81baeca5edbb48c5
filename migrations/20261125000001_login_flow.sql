-- Logins in progress (authorization code + PKCE). A row lives from `/login` or `/token`
-- until its callback, which deletes it (single use, on every replica), or until it is older
-- than `identity.flow_ttl_s`, when the next login start deletes it.
CREATE TABLE login_flow (
    -- SHA-256 of the `state` parameter; the state itself is only in the browser's cookie
    -- and the provider's redirect.
    state_hash     bytea       PRIMARY KEY,
    tenant         text        NOT NULL,
    purpose        text        NOT NULL CHECK (purpose IN ('login', 'api_key')),
    nonce          text        NOT NULL,
    -- Useless without the code, which only the provider's redirect carries; gone within
    -- minutes either way.
    pkce_verifier  text        NOT NULL,
    key_seconds    bigint      CHECK (key_seconds >= 0),
    label          text,
    persona        text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_flow_created_at_idx ON login_flow (created_at);

-- Bearer tokens (ID tokens) are mapped to their entity by the provider's subject.
CREATE INDEX entity_tenant_subject_idx ON entity (tenant, subject) WHERE subject IS NOT NULL;
