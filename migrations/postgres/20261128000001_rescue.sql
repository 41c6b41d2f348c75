-- The rescuer's needs. A report whose work message was lost (dead-lettered by the queue's
-- redrive policy after workers died holding it, dropped by a crash between steps) must
-- not stay unfinished forever, so the rescuer looks for two kinds of stranded reports:
--   * `running` under a lease that expired long ago (its worker died);
--   * `queued` long after the time its message should have been receivable.
-- `available_at` is that time: set when the report is queued, and when an attempt is
-- retried or handed back (now + the retry delay), so a backoff never looks like a loss.

ALTER TABLE reports ADD COLUMN available_at timestamptz;
UPDATE reports SET available_at = COALESCE(queued_at, updated_at) WHERE status = 'queued';

CREATE INDEX reports_running_lease_idx ON reports (lease_expires_at) WHERE status = 'running';
CREATE INDEX reports_queued_available_idx ON reports (available_at) WHERE status = 'queued';
