-- Jobs partitioned by time (docs/retention.md, ADR 11). Job ids are UUIDv7, so a range of ids is
-- a range of creation times: the table is partitioned by ranges of `id` (the primary key stays
-- the id), partitions are made ahead of time and dropped whole once past retention.
--
-- A unique index on a partitioned table must contain the partition key, so the two uniqueness
-- rules exactly-once rests on move to small tables of their own, pruned with the jobs:
--   job_idempotency  (owner, Idempotency-Key) → job, for POST /jobs, /events, /settings
--   job_event_key    (source, id) → job, for events trusted producers publish to the broker
-- A gateway's job needs neither: its event's id is the job's id.

-- The constraints they replace go first (the old unique constraint's name is the new table's).
ALTER TABLE job DROP CONSTRAINT job_event_key;
DROP INDEX job_owner_idempotency_key;

CREATE TABLE job_idempotency (
    owner_id    uuid        NOT NULL,
    key         text        NOT NULL,
    job_id      uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, key)
);
CREATE INDEX job_idempotency_created_at_idx ON job_idempotency (created_at);
INSERT INTO job_idempotency (owner_id, key, job_id, created_at)
SELECT owner_id, idempotency_key, id, created_at
FROM job WHERE idempotency_key IS NOT NULL AND owner_id IS NOT NULL;

CREATE TABLE job_event_key (
    event_source text        NOT NULL,
    event_id     text        NOT NULL,
    job_id       uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_source, event_id)
);
CREATE INDEX job_event_key_created_at_idx ON job_event_key (created_at);
INSERT INTO job_event_key (event_source, event_id, job_id, created_at)
SELECT event_source, event_id, id, created_at FROM job WHERE event_source <> '/surge/gateway';

-- The jobs not finished yet (queued or running): written with the job, removed in the
-- statement that finishes it. Retention drops a partition only when none of its jobs is here,
-- found through this table's primary key instead of a scan of the partition (and without an
-- index on `job.state`, which would make every update of the hot row a non-HOT one, ADR 5).
CREATE TABLE job_open (
    job_id uuid PRIMARY KEY
);
INSERT INTO job_open (job_id) SELECT id FROM job WHERE state IN ('queued', 'running');

-- The table as it is becomes the first partition: no row is copied (attaching it checks its
-- ids against the bound once). It holds every job created before the next midnight (UTC);
-- partitions of a day each follow, made ahead by the gateways (and `surge migrate`).
ALTER TABLE dead_job DROP CONSTRAINT IF EXISTS dead_job_job_id_fkey;
ALTER TABLE job RENAME TO job_p_legacy;
ALTER INDEX job_pkey RENAME TO job_p_legacy_pkey;
ALTER INDEX job_owner_id_idx RENAME TO job_p_legacy_owner_id_idx;

CREATE TABLE job (LIKE job_p_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE job ADD CONSTRAINT job_pkey PRIMARY KEY (id);
ALTER TABLE job ADD CONSTRAINT job_owner_id_fkey
    FOREIGN KEY (owner_id) REFERENCES entity (id) ON DELETE CASCADE;
CREATE INDEX job_owner_id_idx ON job (owner_id, id DESC);
-- Dead-letter replays and the reconciler read a job's request by its source and id.
CREATE INDEX job_event_idx ON job (event_source, event_id);

-- The first id of a UTC time (its milliseconds, then the version and variant bits, the rest
-- zero): the bound every partition starts or ends at (`JobId::first_at` in Rust).
CREATE FUNCTION surge_first_job_id(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0')
            || '70008000000000000000')::uuid
$$;

DO $$
DECLARE
    next_midnight timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                                 + interval '1 day';
    day timestamptz;
BEGIN
    -- Rows of the old table keep whatever ownership they had (a foreign key of the old table
    -- with the same definition is merged into the new one's).
    EXECUTE format('ALTER TABLE job ATTACH PARTITION job_p_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
                   surge_first_job_id(next_midnight));
    FOR i IN 0..6 LOOP
        day := next_midnight + make_interval(days => i);
        EXECUTE format(
            'CREATE TABLE job_p%s PARTITION OF job FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 70)',
            to_char(day AT TIME ZONE 'UTC', 'YYYYMMDDHH24'),
            surge_first_job_id(day),
            surge_first_job_id(day + interval '1 day'));
    END LOOP;
END
$$;
