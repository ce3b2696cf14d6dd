-- Outbound webhooks: one row per message (its id is the webhook-id, the same on every retry).
CREATE TABLE webhook_deliveries (
    id              text        PRIMARY KEY,
    partner         text        NOT NULL,
    event_type      text        NOT NULL,
    body            bytea       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_status     integer,
    last_error      text
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_partner ON webhook_deliveries (partner, created_at DESC);

-- Every attempt: the delivery log staff read.
CREATE TABLE webhook_attempts (
    delivery_id  text        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      integer     NOT NULL,
    started_at   timestamptz NOT NULL,
    status_code  integer,
    latency_ms   integer     NOT NULL,
    error        text,
    PRIMARY KEY (delivery_id, attempt)
);

-- An endpoint that answered 410 Gone: nothing is sent to it until staff enable it again.
CREATE TABLE webhook_disabled_endpoints (
    partner      text        PRIMARY KEY,
    disabled_at  timestamptz NOT NULL DEFAULT now(),
    reason       text        NOT NULL
);

-- Partners' signed callbacks, each webhook-id once (replay protection).
CREATE TABLE webhook_callbacks (
    partner      text        NOT NULL,
    webhook_id   text        NOT NULL,
    type         text        NOT NULL,
    data         jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, webhook_id)
);
