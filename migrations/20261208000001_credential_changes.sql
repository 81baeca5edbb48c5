-- Credential changes announced to every gateway (issue 18): a websocket's credential is
-- checked again the moment its entity's credentials change (revoked, rotated, shortened,
-- pruned, the entity's admin standing renewed or lost), not at its next ping. The
-- notification is sent on commit, whoever made the change: the API, `surge key`, retention,
-- or an operator's SQL. It names only the entity; each socket asks the database itself.
CREATE FUNCTION surge_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'entity' THEN
        PERFORM pg_notify('surge_credentials', OLD.id::text);
    ELSE
        PERFORM pg_notify('surge_credentials', OLD.entity_id::text);
    END IF;
    RETURN NULL;
END
$$;

-- An UPDATE that changes nothing (a login's upsert of its entity) announces nothing.
CREATE TRIGGER auth_changed AFTER UPDATE ON auth
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION surge_credentials_changed();
CREATE TRIGGER auth_removed AFTER DELETE ON auth
    FOR EACH ROW EXECUTE FUNCTION surge_credentials_changed();
CREATE TRIGGER entity_changed AFTER UPDATE ON entity
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION surge_credentials_changed();
CREATE TRIGGER entity_removed AFTER DELETE ON entity
    FOR EACH ROW EXECUTE FUNCTION surge_credentials_changed();
