-- Completion webhooks (Standard Webhooks). A user registers endpoints; every report of
-- theirs that reaches a terminal state gets one durable delivery row per enabled endpoint
-- subscribed to the event, written by a trigger in the transaction of the report's
-- transition, whichever process makes it (worker, API cancel, controller, rescuer). The
-- API's dispatcher sends, retries and records them.

CREATE TABLE webhooks (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url              text NOT NULL,
    -- A JSON array of event names (`report.completed`, …), so one trigger body tests it
    -- in either dialect.
    events           jsonb NOT NULL,
    -- `whsec_<base64>`: the receiver verifies signatures with it, so it is kept as is.
    secret           text NOT NULL,
    created_at       timestamptz NOT NULL,
    -- The last successful delivery: a delivery given up with none since it was created
    -- means the endpoint failed throughout, and it is disabled.
    last_delivered_at timestamptz,
    disabled_at      timestamptz,
    disabled_reason  text
);
-- GET /webhooks and the per-user cap; the trigger's look-up of a user's endpoints.
CREATE INDEX webhooks_user_idx ON webhooks (user_id, id);

-- `id` is the `webhook-id` header: the same on every attempt, so receivers deduplicate.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event            text NOT NULL
                     CHECK (event IN ('report.completed', 'report.failed', 'report.cancelled')),
    -- A delivery means nothing without its report: retention's delete takes it along.
    report_id        uuid NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    -- When a pending delivery is due. Claiming pushes it forward (a lease), so a crashed
    -- sender's delivery comes due again and another replica sends it.
    next_attempt_at  timestamptz,
    last_attempt_at  timestamptz,
    response_status  integer,
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL
);
-- The dispatcher's claim: due pending deliveries, oldest due first.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
-- GET /webhooks/{id}/deliveries, newest first.
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, created_at DESC, id DESC);
-- Deleting a report (retention) finds its deliveries.
CREATE INDEX webhook_deliveries_report_idx ON webhook_deliveries (report_id);

-- Times come from the application: the transition's `updated_at` is the event's time.
CREATE FUNCTION quire_enqueue_webhook_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries
        (id, webhook_id, event, report_id, status, attempts, next_attempt_at, created_at)
    SELECT gen_random_uuid(), w.id, 'report.' || NEW.status, NEW.id, 'pending', 0,
           NEW.updated_at, NEW.updated_at
    FROM webhooks w
    WHERE w.user_id = NEW.user_id
      AND w.disabled_at IS NULL
      AND w.events ? ('report.' || NEW.status);
    RETURN NULL;
END
$$;

CREATE TRIGGER reports_webhook_deliveries
    AFTER UPDATE OF status ON reports
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION quire_enqueue_webhook_deliveries();
