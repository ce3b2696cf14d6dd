-- Customers and staff, their login sessions, delivery addresses and e-mail verifications.
CREATE TABLE accounts (
    id                 uuid PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('customer', 'staff')),
    roles              text[] NOT NULL DEFAULT '{}',
    name               text,
    email              text,
    phone              text,
    password_hash      text,
    email_verified_at  timestamptz,
    terms_version      text,
    terms_accepted_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    closed_at          timestamptz,
    erased_at          timestamptz,
    CHECK (kind = 'staff' OR roles = '{}')
);
-- One account per address and kind; an erased account frees its address.
CREATE UNIQUE INDEX accounts_email_key ON accounts (kind, lower(email)) WHERE email IS NOT NULL;

CREATE TABLE addresses (
    id           uuid PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    label        text,
    recipient    text NOT NULL,
    phone        text,
    line1        text NOT NULL,
    line2        text,
    city         text NOT NULL,
    postal_code  text NOT NULL,
    country      char(2) NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX addresses_account ON addresses (account_id, created_at);

-- A login session: the security log of P9 (IP address, user agent), kept for a declared period.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    account_id    uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    ip            inet,
    user_agent    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    end_reason    text
);
CREATE INDEX sessions_account ON sessions (account_id, created_at DESC);

-- Refresh tokens by hash; a rotated token presented again ends its session (theft).
CREATE TABLE refresh_tokens (
    token_hash   bytea PRIMARY KEY,
    session_id   uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rotated_at   timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- E-mail verification codes by hash. A registration is only a code until it is confirmed (with
-- its own password): the account is created then, so nobody can hold an address unconfirmed.
-- A change of address belongs to an account.
CREATE TABLE email_verifications (
    token_hash     bytea PRIMARY KEY,
    account_id     uuid REFERENCES accounts (id) ON DELETE CASCADE,
    email          text NOT NULL,
    purpose        text NOT NULL CHECK (purpose IN ('register', 'change')),
    name           text,
    phone          text,
    password_hash  text,
    terms_version  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    CHECK (CASE purpose WHEN 'change' THEN account_id IS NOT NULL
                        ELSE account_id IS NULL AND name IS NOT NULL AND password_hash IS NOT NULL END)
);
CREATE INDEX email_verifications_email ON email_verifications (lower(email));
CREATE INDEX email_verifications_account ON email_verifications (account_id);

-- Failed logins and registrations, by a keyed hash of the address or of the client's network.
CREATE TABLE throttle (
    key   bytea NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX throttle_key_at ON throttle (key, at);

-- Usage statistics (P9, P19): logins per day and truncated network, never a full address.
CREATE TABLE login_stats (
    day      date NOT NULL,
    network  cidr NOT NULL,
    logins   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, network)
);

-- Every staff look at a customer's data (P16): who, when, which customer, why.
CREATE TABLE staff_access (
    id           uuid PRIMARY KEY,
    staff_id     uuid NOT NULL REFERENCES accounts (id),
    customer_id  uuid NOT NULL REFERENCES accounts (id),
    reason       text NOT NULL CHECK (length(reason) >= 10),
    categories   text[] NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX staff_access_customer ON staff_access (customer_id, at);

-- Mail to send (verification codes, notices), written in the transaction that causes it.
CREATE TABLE outgoing_mail (
    id              uuid PRIMARY KEY,
    account_id      uuid REFERENCES accounts (id) ON DELETE CASCADE,
    recipient       text NOT NULL,
    subject         text NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    sent_at         timestamptz,
    last_error      text
);
CREATE INDEX outgoing_mail_due ON outgoing_mail (next_attempt_at) WHERE sent_at IS NULL;
