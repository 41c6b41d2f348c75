-- Quire's schema on Postgres. The API server, the worker and the controller share it.
-- Timestamps are written by the application (never `now()` in SQL) so that the same
-- statements run on SQLite and tests can reason about time.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- Normalised (trimmed, lower-cased) by the API before it gets here.
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL
);

-- Refresh tokens are opaque secrets; only their SHA-256 is stored. All tokens issued from
-- one sign-in share a family: presenting a spent token revokes the family.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    spent_at    timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

-- The original service's columns (id … completed_at) plus what the queue, the worker and
-- idempotent requests need. Ids are UUIDv7, so ordering by id is ordering by creation.
CREATE TABLE reports (
    id                      uuid PRIMARY KEY,
    user_id                 uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    report_type             text NOT NULL CHECK (report_type IN ('profile', 'activity', 'dataset')),
    format                  text NOT NULL CHECK (format IN ('pdf', 'csv', 'json')),
    parameters              jsonb NOT NULL DEFAULT '{}',
    status                  text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'queued', 'running', 'completed', 'failed', 'cancelled')),
    progress                integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts                integer NOT NULL DEFAULT 0,
    error_message           text,
    created_at              timestamptz NOT NULL,
    queued_at               timestamptz,
    started_at              timestamptz,
    completed_at            timestamptz,
    failed_at               timestamptz,
    cancelled_at            timestamptz,
    updated_at              timestamptz NOT NULL,
    -- The worker holding the report while it runs, and until when.
    lease_owner             text,
    lease_expires_at        timestamptz,
    idempotency_key         text,
    request_fingerprint     text,
    output_key              text,
    output_file_path        text,
    output_size             bigint,
    output_checksum         text,
    download_url            text,
    download_url_expires_at timestamptz
);
-- GET /reports: the caller's reports newest first, optionally by status.
CREATE INDEX reports_user_idx ON reports (user_id, id DESC);
CREATE INDEX reports_user_status_idx ON reports (user_id, status, id DESC);
-- Idempotency-Key is scoped to the user.
CREATE UNIQUE INDEX reports_idempotency_idx ON reports (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The dispatcher's sweep for reports whose dispatch did not happen.
CREATE INDEX reports_pending_idx ON reports (created_at) WHERE status = 'pending';

-- The database work queue: SQS semantics (visibility timeout, receipt, receive count) on a
-- table, for deployments without SQS and for the embedded mode.
CREATE TABLE work_queue (
    id                  uuid PRIMARY KEY,
    body                text NOT NULL,
    created_at          timestamptz NOT NULL,
    -- A message is receivable once visible_at has passed.
    visible_at          timestamptz NOT NULL,
    receive_count       integer NOT NULL DEFAULT 0,
    -- Changes on every receive, so a stale holder cannot delete or extend it.
    receipt             uuid,
    dead_lettered_at    timestamptz,
    dead_letter_reason  text
);
CREATE INDEX work_queue_visible_idx ON work_queue (visible_at) WHERE dead_lettered_at IS NULL;
