-- Personas in use (issue 19): the persona of the credential a job was submitted with, kept on
-- the job so its function sees it from the record (never from a message), and a bound on what
-- a persona's `other` may hold. A nullable column with no default rewrites no partition.
ALTER TABLE job ADD COLUMN persona text;

-- The API refuses more than 16 KiB (compact JSON); the database refuses what no API would
-- write (jsonb's own text form is a little longer than compact JSON, hence the margin).
ALTER TABLE entity_persona
    ADD CONSTRAINT entity_persona_other_object CHECK (jsonb_typeof(other) = 'object'),
    ADD CONSTRAINT entity_persona_other_size CHECK (octet_length(other::text) <= 32768);
