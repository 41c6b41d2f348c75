-- Quire's schema on SQLite (embedded mode). Same tables and columns as the Postgres
-- schema; uuids are 16-byte blobs, timestamps fixed-width RFC 3339 text (see
-- core/src/store/timestamp.rs), JSON is text.

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE refresh_tokens (
    id          BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   BLOB NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    spent_at    TEXT,
    revoked_at  TEXT
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

CREATE TABLE reports (
    id                      BLOB PRIMARY KEY,
    user_id                 BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    report_type             TEXT NOT NULL CHECK (report_type IN ('profile', 'activity', 'dataset')),
    format                  TEXT NOT NULL CHECK (format IN ('pdf', 'csv', 'json')),
    parameters              TEXT NOT NULL DEFAULT '{}',
    status                  TEXT NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'queued', 'running', 'completed', 'failed', 'cancelled')),
    progress                INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts                INTEGER NOT NULL DEFAULT 0,
    error_message           TEXT,
    created_at              TEXT NOT NULL,
    queued_at               TEXT,
    started_at              TEXT,
    completed_at            TEXT,
    failed_at               TEXT,
    cancelled_at            TEXT,
    updated_at              TEXT NOT NULL,
    lease_owner             TEXT,
    lease_expires_at        TEXT,
    idempotency_key         TEXT,
    request_fingerprint     TEXT,
    output_key              TEXT,
    output_file_path        TEXT,
    output_size             INTEGER,
    output_checksum         TEXT,
    download_url            TEXT,
    download_url_expires_at TEXT
);
CREATE INDEX reports_user_idx ON reports (user_id, id DESC);
CREATE INDEX reports_user_status_idx ON reports (user_id, status, id DESC);
CREATE UNIQUE INDEX reports_idempotency_idx ON reports (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX reports_pending_idx ON reports (created_at) WHERE status = 'pending';

CREATE TABLE work_queue (
    id                  BLOB PRIMARY KEY,
    body                TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    visible_at          TEXT NOT NULL,
    receive_count       INTEGER NOT NULL DEFAULT 0,
    receipt             BLOB,
    dead_lettered_at    TEXT,
    dead_letter_reason  TEXT
);
CREATE INDEX work_queue_visible_idx ON work_queue (visible_at) WHERE dead_lettered_at IS NULL;
