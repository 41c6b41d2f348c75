-- Kept in step with the Postgres schema: webhook endpoints, their durable deliveries and
-- the trigger that records a delivery in the transaction of a report's move to a terminal
-- state (see the Postgres migration). Events are a JSON array in text.

CREATE TABLE webhooks (
    id               BLOB PRIMARY KEY,
    user_id          BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url              TEXT NOT NULL,
    events           TEXT NOT NULL,
    secret           TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    last_delivered_at TEXT,
    disabled_at      TEXT,
    disabled_reason  TEXT
);
CREATE INDEX webhooks_user_idx ON webhooks (user_id, id);

CREATE TABLE webhook_deliveries (
    id               BLOB PRIMARY KEY,
    webhook_id       BLOB NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event            TEXT NOT NULL
                     CHECK (event IN ('report.completed', 'report.failed', 'report.cancelled')),
    report_id        BLOB NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    last_attempt_at  TEXT,
    response_status  INTEGER,
    last_error       TEXT,
    delivered_at     TEXT,
    created_at       TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_report_idx ON webhook_deliveries (report_id);

-- `randomblob(16)` is evaluated per row: one fresh 128-bit id per delivery.
CREATE TRIGGER reports_webhook_deliveries
    AFTER UPDATE OF status ON reports
    FOR EACH ROW
    WHEN OLD.status IS NOT NEW.status
         AND NEW.status IN ('completed', 'failed', 'cancelled')
BEGIN
    INSERT INTO webhook_deliveries
        (id, webhook_id, event, report_id, status, attempts, next_attempt_at, created_at)
    SELECT randomblob(16), w.id, 'report.' || NEW.status, NEW.id, 'pending', 0,
           NEW.updated_at, NEW.updated_at
    FROM webhooks w
    WHERE w.user_id = NEW.user_id
      AND w.disabled_at IS NULL
      AND EXISTS (SELECT 1 FROM json_each(w.events) WHERE json_each.value = 'report.' || NEW.status);
END;
