-- The privacy service: data-subject requests, one task per participant, export parts.

CREATE TABLE requests (
    id                 uuid PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('export', 'erasure', 'rectification', 'objection', 'withdrawal')),
    subject            jsonb NOT NULL,          -- shared.contracts.privacy.DataSubject
    subject_key        bytea NOT NULL,          -- keyed hash of the subject: joins a duplicate request
    customer_id        uuid,                    -- the requester, when signed in (their status page)
    contact_email      text,                    -- where the outcome is told
    language           text NOT NULL DEFAULT 'lv' CHECK (language IN ('lv', 'en')),
    details            jsonb NOT NULL DEFAULT '{}',  -- rectification: the corrections; objection: purpose; ...
    source             text NOT NULL CHECK (source IN ('customer', 'guest', 'staff', 'account_closed')),
    identification     text,                    -- how staff verified who asked (P26)
    staff_id           uuid,
    guest_token_hash   bytea,                   -- a guest's key to the request's status page
    state              text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'completed', 'attention')),
    received_at        timestamptz NOT NULL DEFAULT now(),
    due_at             timestamptz NOT NULL,
    extended_by_months integer NOT NULL DEFAULT 0 CHECK (extended_by_months BETWEEN 0 AND 2),
    extension_reason   text,
    completed_at       timestamptz
);
-- One open request of a kind per subject: another of the same joins it.
CREATE UNIQUE INDEX requests_open_per_subject ON requests (kind, subject_key) WHERE state <> 'completed';
CREATE INDEX requests_customer ON requests (customer_id, received_at DESC);
CREATE INDEX requests_due ON requests (due_at) WHERE state <> 'completed';

-- One task per participant: a service (over RPC) or a processor (a signed webhook and its callback).
CREATE TABLE tasks (
    request_id      uuid NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    participant     text NOT NULL,              -- a service's name, or 'partner:<name>'
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'waiting', 'held', 'done', 'failed', 'manual')),
    stage           text NOT NULL DEFAULT 'run' CHECK (stage IN ('run', 'verify')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    sent_at         timestamptz,                -- a processor's webhook was queued
    webhook_id      text,
    outcome         jsonb,                      -- ErasureOutcome, the export's count, or a manual outcome
    remaining       text[],                     -- what the verification re-read still found
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, participant)
);
CREATE INDEX tasks_due ON tasks (next_attempt_at) WHERE state = 'pending';
CREATE UNIQUE INDEX tasks_webhook ON tasks (webhook_id) WHERE webhook_id IS NOT NULL;

-- The parts of an export, as each participant gave them, until the archive's link expires.
CREATE TABLE export_records (
    request_id  uuid NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    participant text NOT NULL,
    seq         bigserial,
    category    text NOT NULL,
    data        jsonb NOT NULL,
    PRIMARY KEY (request_id, participant, seq)
);

CREATE TABLE export_links (
    token_hash     bytea PRIMARY KEY,
    request_id     uuid NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    expires_at     timestamptz NOT NULL,
    downloads_left integer NOT NULL CHECK (downloads_left >= 0)
);

CREATE TABLE outgoing_mail (
    id              uuid PRIMARY KEY,
    request_id      uuid REFERENCES requests (id) ON DELETE CASCADE,
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

-- One-time codes mailed to a guest's address: to make a request, or to download its export.
CREATE TABLE guest_codes (
    id          uuid PRIMARY KEY,
    email       text NOT NULL,
    code_hash   bytea NOT NULL,
    purpose     text NOT NULL CHECK (purpose IN ('request', 'download')),
    asked       jsonb,                          -- the request the code will start
    request_id  uuid REFERENCES requests (id) ON DELETE CASCADE,  -- the export it opens
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX guest_codes_email ON guest_codes (email, created_at DESC);
