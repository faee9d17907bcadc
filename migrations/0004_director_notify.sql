-- Tell every gangliond when a device's director state changes, so that the check-in answers
-- each replica keeps in memory (server/checkin_cache.c) are dropped at once, whoever changed it.
CREATE FUNCTION gn_notify_director() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_TABLE_NAME = 'devices' THEN
        PERFORM pg_notify('gn_director', NEW.id::text);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('gn_director', OLD.device_id::text);
    ELSE
        PERFORM pg_notify('gn_director', NEW.device_id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER device_desired_notify AFTER INSERT OR UPDATE OR DELETE ON device_desired
    FOR EACH ROW EXECUTE FUNCTION gn_notify_director();
CREATE TRIGGER director_targets_notify AFTER INSERT OR UPDATE OR DELETE ON director_targets
    FOR EACH ROW EXECUTE FUNCTION gn_notify_director();
CREATE TRIGGER devices_status_notify AFTER UPDATE OF status ON devices
    FOR EACH ROW EXECUTE FUNCTION gn_notify_director();
