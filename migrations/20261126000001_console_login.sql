-- The operations console logs in through the same flow as `/login`; its callback hands the
-- login token to the console page instead of answering JSON.
ALTER TABLE login_flow DROP CONSTRAINT login_flow_purpose_check;
ALTER TABLE login_flow ADD CONSTRAINT login_flow_purpose_check
    CHECK (purpose IN ('login', 'api_key', 'console'));
