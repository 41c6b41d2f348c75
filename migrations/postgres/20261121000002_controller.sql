-- The Kubernetes controller's needs: a record that a report's output was deleted (its
-- ReportRequest was deleted or expired), and a notification whenever a report changes in
-- a way its ReportRequest's status shows, so the controller is woken instead of polling.

ALTER TABLE reports ADD COLUMN output_deleted_at timestamptz;

-- Payload: the report id. Lease renewals touch none of these columns and stay silent.
CREATE FUNCTION quire_notify_report_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quire_report_changed', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER reports_changed
    AFTER UPDATE OF status, progress, attempts, error_message, output_key, output_deleted_at
    ON reports
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.progress IS DISTINCT FROM NEW.progress
          OR OLD.attempts IS DISTINCT FROM NEW.attempts
          OR OLD.error_message IS DISTINCT FROM NEW.error_message
          OR OLD.output_key IS DISTINCT FROM NEW.output_key
          OR OLD.output_deleted_at IS DISTINCT FROM NEW.output_deleted_at)
    EXECUTE FUNCTION quire_notify_report_changed();
