-- Kept in step with the Postgres schema: the quota, retention and trace columns and indexes.

-- Quotas count a user's reports of the last hour (`created_at > now - 1h`); the unfinished
-- ones are a range of `reports_user_status_idx`.
CREATE INDEX reports_user_created_idx ON reports (user_id, created_at);

-- Retention deletes the outputs of reports completed long ago …
CREATE INDEX reports_live_output_idx ON reports (completed_at)
    WHERE output_key IS NOT NULL AND output_deleted_at IS NULL;
-- … and, later, finished reports' rows, oldest first by the moment they finished.
CREATE INDEX reports_finished_idx ON reports ((COALESCE(completed_at, failed_at, cancelled_at)))
    WHERE status IN ('completed', 'failed', 'cancelled');

-- The W3C trace context (`traceparent`) of the request that created the report: every
-- dispatch puts it in the work message, so the worker's spans join the request's trace.
ALTER TABLE reports ADD COLUMN traceparent TEXT;
