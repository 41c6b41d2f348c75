-- Kept in step with the Postgres schema: when a queued report's message should be
-- receivable, and the rescuer's two indexes (see the Postgres migration).
ALTER TABLE reports ADD COLUMN available_at TEXT;
UPDATE reports SET available_at = COALESCE(queued_at, updated_at) WHERE status = 'queued';

CREATE INDEX reports_running_lease_idx ON reports (lease_expires_at) WHERE status = 'running';
CREATE INDEX reports_queued_available_idx ON reports (available_at) WHERE status = 'queued';
