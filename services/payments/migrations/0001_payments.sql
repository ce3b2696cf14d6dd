-- The payments service: the PSP's customers and saved cards (tokens, never numbers), payments
-- of orders and membership periods, refunds, memberships, disputes and erasures held back.

CREATE TABLE psp_customers (
    customer_id uuid PRIMARY KEY,
    psp_customer_id text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A saved card: the PSP's payment-method id and what the customer needs to recognise it.
CREATE TABLE cards (
    id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    psp_payment_method_id text NOT NULL UNIQUE,
    brand text NOT NULL,
    last4 text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month int NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cards_customer ON cards (customer_id, created_at);

CREATE TABLE memberships (
    id uuid PRIMARY KEY,
    customer_id uuid,
    card_id uuid REFERENCES cards ON DELETE SET NULL,
    status text NOT NULL CHECK (status IN ('incomplete', 'active', 'past_due', 'lapsed', 'cancelled')),
    price_cents int NOT NULL CHECK (price_cents > 0),
    currency text NOT NULL,
    period int NOT NULL DEFAULT 0,          -- the period paid for last (1 is the first month)
    period_start timestamptz,
    period_end timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    failed_attempts int NOT NULL DEFAULT 0, -- failed charges for the period due
    first_failed_at timestamptz,
    next_charge_at timestamptz,             -- when the scheduler charges (or ends) it next
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz
);
CREATE UNIQUE INDEX memberships_one_live ON memberships (customer_id)
    WHERE status IN ('incomplete', 'active', 'past_due');
CREATE INDEX memberships_due ON memberships (next_charge_at) WHERE status IN ('active', 'past_due');

CREATE TABLE payments (
    id uuid PRIMARY KEY,
    order_id uuid,
    membership_id uuid REFERENCES memberships ON DELETE SET NULL,
    period int,
    attempt int NOT NULL,
    customer_id uuid,
    amount_cents int NOT NULL CHECK (amount_cents > 0),
    currency text NOT NULL,
    status text NOT NULL CHECK (status IN ('creating', 'requires_action', 'processing', 'succeeded', 'failed', 'canceled')),
    idempotency_key text NOT NULL UNIQUE,
    psp_payment_method_id text,
    psp_customer_id text,
    psp_intent_id text UNIQUE,
    card_brand text,
    card_last4 text,
    card_exp_month int,
    card_exp_year int,
    off_session boolean NOT NULL,
    failure_code text,
    failure_message text,
    action_url text,
    refunded_cents int NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    succeeded_at timestamptz,
    check_at timestamptz,                   -- when the poller asks the PSP about it (NULL: settled)
    contact_erased_at timestamptz,
    CHECK (order_id IS NULL OR membership_id IS NULL)
);
-- One payment in flight or done per order; a declined one may be followed by another.
CREATE UNIQUE INDEX payments_one_per_order ON payments (order_id)
    WHERE order_id IS NOT NULL AND status IN ('creating', 'requires_action', 'processing', 'succeeded');
-- A membership period is charged at most once: one attempt at a time, one success ever.
CREATE UNIQUE INDEX payments_period_attempt ON payments (membership_id, period, attempt) WHERE membership_id IS NOT NULL;
CREATE UNIQUE INDEX payments_period_paid ON payments (membership_id, period)
    WHERE membership_id IS NOT NULL AND status = 'succeeded';
CREATE INDEX payments_customer ON payments (customer_id, created_at);
CREATE INDEX payments_to_check ON payments (check_at) WHERE check_at IS NOT NULL;

CREATE TABLE refunds (
    id uuid PRIMARY KEY,
    payment_id uuid NOT NULL REFERENCES payments ON DELETE CASCADE,
    amount_cents int NOT NULL CHECK (amount_cents > 0),
    status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    psp_refund_id text UNIQUE,
    reason text NOT NULL,
    requested_by text NOT NULL,             -- 'staff <id>' or 'orders' (a cancelled order)
    failure_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    succeeded_at timestamptz,
    check_at timestamptz
);
CREATE INDEX refunds_payment ON refunds (payment_id);
CREATE INDEX refunds_to_check ON refunds (check_at) WHERE check_at IS NOT NULL;

-- A chargeback: while open, it holds the customer's payment data (P24).
CREATE TABLE disputes (
    id text PRIMARY KEY,
    payment_id uuid NOT NULL REFERENCES payments ON DELETE CASCADE,
    amount_cents int NOT NULL,
    reason text NOT NULL,
    status text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz
);

CREATE TABLE held_erasures (
    request_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
