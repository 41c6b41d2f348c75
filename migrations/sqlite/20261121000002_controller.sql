-- Kept in step with the Postgres schema: when a report's output was deleted.
ALTER TABLE reports ADD COLUMN output_deleted_at TEXT;
