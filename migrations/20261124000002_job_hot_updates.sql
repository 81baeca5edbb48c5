-- Keep the job hot path cheap (docs/BENCHMARKS.md): a job row is updated twice (claim, result),
-- and an index that covers `state` makes every such update a non-HOT update that rewrites all
-- of the table's indexes. Scaling signals count queued and in-flight jobs from the broker
-- (ready + unacknowledged messages), not from this table, so the state index goes; free space
-- in each page lets Postgres update rows in place (HOT).
DROP INDEX IF EXISTS job_function_state_idx;
ALTER TABLE job SET (fillfactor = 70);
