-- Dead jobs by function, for the dead-letter API (GET /admin/dead/{function}, replay). ADR 5
-- keeps `state` out of the job table's indexes so its hot updates stay HOT; this side table is
-- written only on the rare transition to `dead` (in the same statement) and emptied by a
-- replay, so listing the dead jobs of a function is an index range scan.
CREATE TABLE dead_job (
    job_id      uuid        PRIMARY KEY REFERENCES job (id) ON DELETE CASCADE,
    function    text        NOT NULL,
    died_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_job_function_idx ON dead_job (function, died_at DESC, job_id DESC);

-- Jobs that died before this table existed.
INSERT INTO dead_job (job_id, function, died_at)
SELECT id, function, coalesce(finished_at, updated_at) FROM job WHERE state = 'dead'
ON CONFLICT DO NOTHING;
