-- Jobs whose request event the broker has not confirmed (yet): written in the statement that
-- records the job, removed (in batches) once the gateway's publish is confirmed. A reconciler
-- on every gateway replica publishes again what stays here past its due time, so a lost
-- confirm, a broker restart or a gateway killed between the INSERT and the confirm strands
-- nothing (docs/jobs.md "Delivery", ADR 9). A side table keeps the hot `job` row's updates
-- HOT (ADR 5) and the reconciler's scan to the few rows in doubt, never the backlog the
-- broker holds safely.
CREATE TABLE job_unconfirmed (
    job_id      uuid        PRIMARY KEY,
    -- when the reconciler may publish it (again)
    due_at      timestamptz NOT NULL,
    -- how often the reconciler published it
    republished integer     NOT NULL DEFAULT 0
);
CREATE INDEX job_unconfirmed_due_at_idx ON job_unconfirmed (due_at);
