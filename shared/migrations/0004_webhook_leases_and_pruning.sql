-- A claim carries a lease token: only the worker holding it may settle the delivery.
ALTER TABLE webhook_deliveries ADD COLUMN lease uuid;
-- Every attempt is logged, including one a stale worker made after its lease ran out.
ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_pkey;
ALTER TABLE webhook_attempts ADD COLUMN id bigserial PRIMARY KEY;
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);
-- Settled deliveries and callbacks are pruned after a while (bodies carry personal data).
CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (created_at) WHERE status <> 'pending';
CREATE INDEX webhook_callbacks_received ON webhook_callbacks (received_at);
