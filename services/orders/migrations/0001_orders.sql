-- The catalogue, orders with their lines, shipments, invoices, complaints and staff access.
-- Money is integer cents (EUR); VAT rates are whole percent (Latvia: 21, 12, 5).
CREATE TABLE products (
    id           uuid PRIMARY KEY,
    sku          text NOT NULL UNIQUE,
    name         text NOT NULL,
    category     text NOT NULL,
    price_cents  bigint NOT NULL CHECK (price_cents > 0),  -- the consumer price, VAT included
    vat_rate     smallint NOT NULL CHECK (vat_rate IN (21, 12, 5)),
    stock        integer NOT NULL CHECK (stock >= 0),
    weight_grams integer NOT NULL DEFAULT 500 CHECK (weight_grams > 0),
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_listing ON products (category, name, id) WHERE active;

-- An order and the contact data it was placed with. customer_id is NULL for a guest. After
-- an erasure (or three years, for a guest) the contact columns are NULL and contact_erased_at
-- says when; the fiscal columns stay for the accounting period (P25).
CREATE TABLE orders (
    id                 uuid PRIMARY KEY,
    customer_id        uuid,
    guest              boolean NOT NULL,
    status             text NOT NULL CHECK (status IN
                           ('created', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded')),
    carrier            text NOT NULL,
    contact_name       text,
    contact_email      text,
    contact_phone      text,
    address_line1      text,
    address_line2      text,
    address_city       text,
    address_postal_code text,
    address_country    char(2),
    net_cents          bigint NOT NULL,
    vat_cents          bigint NOT NULL,
    gross_cents        bigint NOT NULL CHECK (gross_cents > 0),
    currency           char(3) NOT NULL DEFAULT 'EUR',
    payment_id         text,
    refunded_cents     bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    paid_at            timestamptz,
    shipped_at         timestamptz,
    delivered_at       timestamptz,
    cancelled_at       timestamptz,
    refunded_at        timestamptz,
    contact_erased_at  timestamptz,
    CHECK (guest = (customer_id IS NULL) OR contact_erased_at IS NOT NULL)
);
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC, id DESC) WHERE customer_id IS NOT NULL;
CREATE INDEX orders_contact_email ON orders (lower(contact_email)) WHERE contact_email IS NOT NULL;
CREATE INDEX orders_contact_phone ON orders (contact_phone) WHERE contact_phone IS NOT NULL;
CREATE INDEX orders_guest_age ON orders (created_at) WHERE guest AND contact_erased_at IS NULL;
CREATE INDEX orders_age ON orders (created_at);

CREATE TABLE order_lines (
    order_id          uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no           smallint NOT NULL,
    product_id        uuid NOT NULL REFERENCES products (id),
    sku               text NOT NULL,
    name              text NOT NULL,
    category          text NOT NULL,
    quantity          integer NOT NULL CHECK (quantity > 0),
    unit_price_cents  bigint NOT NULL,
    vat_rate          smallint NOT NULL,
    net_cents         bigint NOT NULL,
    vat_cents         bigint NOT NULL,
    gross_cents       bigint NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- Idempotency-Key (per customer, or 'guest'): the same key and body is the same order.
CREATE TABLE checkout_keys (
    scope         text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    -- claimed before the order it names is written, in the same transaction
    order_id      uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX checkout_keys_order ON checkout_keys (order_id);

-- What was sent to the carrier the customer chose (the webhook holds the contact data).
CREATE TABLE shipments (
    id               uuid PRIMARY KEY,
    order_id         uuid NOT NULL UNIQUE REFERENCES orders (id) ON DELETE CASCADE,
    carrier          text NOT NULL,
    webhook_id       text NOT NULL,
    tracking_number  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    accepted_at      timestamptz,
    delivered_at     timestamptz
);

-- Invoice numbers run per year without gaps: the counter row is taken in the transaction that
-- issues the invoice, so a number is used exactly when the invoice commits.
CREATE TABLE invoice_counters (
    year  integer PRIMARY KEY,
    last  integer NOT NULL
);

CREATE TABLE invoices (
    id            uuid PRIMARY KEY,
    order_id      uuid NOT NULL UNIQUE REFERENCES orders (id) ON DELETE CASCADE,
    year          integer NOT NULL,
    seq           integer NOT NULL,
    number        text NOT NULL UNIQUE,
    issued_on     date NOT NULL,
    buyer_name    text,
    net_cents     bigint NOT NULL,
    vat_cents     bigint NOT NULL,
    gross_cents   bigint NOT NULL,
    currency      char(3) NOT NULL,
    webhook_id    text,
    booked_on     date,
    UNIQUE (year, seq)
);

-- Consumer complaints (P11, P24): open, then resolved with a reason.
CREATE TABLE complaints (
    id            uuid PRIMARY KEY,
    order_id      uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    customer_id   uuid,
    opened_by     text NOT NULL CHECK (opened_by IN ('customer', 'support')),
    description   text NOT NULL,
    status        text NOT NULL CHECK (status IN ('open', 'resolved')),
    resolution    text,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    resolved_by   uuid
);
CREATE INDEX complaints_order ON complaints (order_id);
CREATE INDEX complaints_customer ON complaints (customer_id, opened_at);

-- Every staff look at a customer's orders, and every staff action on a complaint (P16).
CREATE TABLE staff_access (
    id           uuid PRIMARY KEY,
    staff_id     uuid NOT NULL,
    customer_id  uuid,
    order_id     uuid,
    reason       text NOT NULL CHECK (length(reason) >= 10),
    categories   text[] NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX staff_access_customer ON staff_access (customer_id, at);

-- An erasure that a legal hold or an undelivered order holds back: the sweep finishes it when
-- nothing holds it any more.
CREATE TABLE held_erasures (
    request_id   uuid PRIMARY KEY,
    customer_id  uuid,
    emails       text[] NOT NULL DEFAULT '{}',
    phones       text[] NOT NULL DEFAULT '{}',
    requested_at timestamptz NOT NULL DEFAULT now()
);
