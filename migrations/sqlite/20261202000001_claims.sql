-- How many times a worker has claimed a report. Unlike `attempts`, nothing hands a claim
-- back, so a report whose first claim this is cannot have an output an earlier attempt
-- stored, and the worker skips looking for one (on S3, a HEAD per report). Reports
-- already started count one claim: their next claim looks.
ALTER TABLE reports ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
UPDATE reports SET claims = 1 WHERE started_at IS NOT NULL;
