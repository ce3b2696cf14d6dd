-- A chargeback on the order's payment (payments' dispute_opened / dispute_closed): while one is
-- open, the order's data is held from erasure (P24).
ALTER TABLE orders ADD COLUMN dispute_id text, ADD COLUMN disputed_at timestamptz, ADD COLUMN dispute_closed_at timestamptz;
