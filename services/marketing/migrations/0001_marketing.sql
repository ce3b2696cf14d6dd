-- The marketing service: people it may market to, their consent ledger, objections,
-- preference profiles, campaigns and their deliveries, suppression after erasure.

-- The wording a consent was given to, in Latvian and English (P21): a consent names its version.
CREATE TABLE consent_wordings (
    version      text PRIMARY KEY,
    channel      text CHECK (channel IN ('email', 'sms')),
    purpose      text NOT NULL CHECK (purpose IN ('direct_marketing', 'profiling')),
    text_lv      text NOT NULL,
    text_en      text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((purpose = 'profiling') = (channel IS NULL))
);

INSERT INTO consent_wordings (version, channel, purpose, text_lv, text_en) VALUES
('email-2026-11', 'email', 'direct_marketing',
 'Vēlos saņemt Veikala piedāvājumus un jaunumus e-pastā. Piekrišanu varu atsaukt jebkurā laikā ar saiti katrā vēstulē vai savā kontā.',
 'I want to receive Veikals offers and news by e-mail. I can withdraw this consent at any time by the link in every message or in my account.'),
('sms-2026-11', 'sms', 'direct_marketing',
 'Vēlos saņemt Veikala piedāvājumus īsziņās. Piekrišanu varu atsaukt jebkurā laikā savā kontā vai ar saiti īsziņā.',
 'I want to receive Veikals offers by text message. I can withdraw this consent at any time in my account or by the link in the message.'),
('profiling-2026-11', NULL, 'profiling',
 'Piekrītu, ka Veikals analizē manus pirkumus (kategorijas, biežumu, summas), lai piedāvājumi atbilstu manām interesēm. Varu iebilst jebkurā laikā.',
 'I agree that Veikals analyses my purchases (categories, frequency, amounts) so that offers match my interests. I can object at any time.');

-- Whom marketing may reach: a customer (by account id) or a guest (by e-mail address).
CREATE TABLE people (
    id          uuid PRIMARY KEY,
    customer_id uuid UNIQUE,
    email       text,
    email_key   bytea,   -- keyed hash of the address (suppression after erasure)
    phone       text,
    phone_key   bytea,
    name        text,
    language    text NOT NULL DEFAULT 'lv' CHECK (language IN ('lv', 'en')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz  -- the account was closed: nothing more is sent
);
CREATE UNIQUE INDEX people_guest_email ON people (email) WHERE customer_id IS NULL;
CREATE INDEX people_email ON people (email);
CREATE INDEX people_phone ON people (phone);

-- The consent ledger (P21, P28): append-only; the current state is each purpose's newest entry.
CREATE TABLE consent_entries (
    id              bigserial PRIMARY KEY,
    person_id       uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    channel         text CHECK (channel IN ('email', 'sms')),
    purpose         text NOT NULL CHECK (purpose IN ('direct_marketing', 'profiling')),
    granted         boolean NOT NULL,
    source          text NOT NULL CHECK (source IN ('web', 'support', 'unsubscribe_link', 'double_opt_in',
                                                    'objection', 'account_closed', 'privacy_request')),
    wording_version text REFERENCES consent_wordings (version),
    address         text,   -- the e-mail address or phone number it was given or withdrawn for
    staff_id        uuid,   -- support, acting on the customer's e-mailed request
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((purpose = 'profiling') = (channel IS NULL)),
    CHECK (NOT granted OR wording_version IS NOT NULL)
);
CREATE INDEX consent_entries_state ON consent_entries (person_id, purpose, channel, id DESC);

CREATE FUNCTION consent_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the consent ledger is append-only: % is not allowed', TG_OP;
END $$;
CREATE TRIGGER consent_entries_append_only BEFORE UPDATE ON consent_entries
    FOR EACH ROW EXECUTE FUNCTION consent_entries_append_only();

-- A new e-mail consent takes effect when its holder confirms it by the link we mailed.
CREATE TABLE consent_confirmations (
    token_hash      bytea PRIMARY KEY,
    person_id       uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    email           text NOT NULL,
    wording_version text NOT NULL REFERENCES consent_wordings (version),
    source          text NOT NULL,
    staff_id        uuid,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    confirmed_at    timestamptz
);
CREATE INDEX consent_confirmations_person ON consent_confirmations (person_id);

-- Objections (Art. 21, P29): while one stands, nothing is processed for its purpose.
CREATE TABLE objections (
    person_id uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    purpose   text NOT NULL CHECK (purpose IN ('direct_marketing', 'profiling')),
    source    text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, purpose)
);

-- Preference profiles (P6, P29), from paid orders, while profiling is consented to.
CREATE TABLE profiles (
    person_id      uuid PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
    orders         integer NOT NULL,
    spend_cents    bigint NOT NULL,
    currency       text NOT NULL,
    first_order_at timestamptz NOT NULL,
    last_order_at  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE profile_categories (
    person_id   uuid NOT NULL REFERENCES profiles (person_id) ON DELETE CASCADE,
    category    text NOT NULL,
    items       integer NOT NULL,
    spend_cents bigint NOT NULL,
    PRIMARY KEY (person_id, category)
);
CREATE INDEX profile_categories_category ON profile_categories (category);

CREATE TABLE campaigns (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms')),
    subject_lv  text,
    subject_en  text,
    body_lv     text NOT NULL,
    body_en     text NOT NULL,
    audience    jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'sending', 'sent', 'cancelled')),
    created_by  uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX campaigns_sending ON campaigns (started_at) WHERE status = 'sending';

-- One row per recipient chosen when the campaign starts; each is sent once, and only while
-- its person still consents.
CREATE TABLE campaign_deliveries (
    campaign_id     uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    person_id       uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    id              uuid NOT NULL UNIQUE,  -- the Message-ID's and the SMS's key
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    sent_at         timestamptz,
    delivered_at    timestamptz,  -- the SMS gateway reported it delivered
    skipped_reason  text,
    last_error      text,
    PRIMARY KEY (campaign_id, person_id)
);
CREATE INDEX campaign_deliveries_due ON campaign_deliveries (campaign_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX campaign_deliveries_person ON campaign_deliveries (person_id);

-- After an erasure, a keyed hash of each e-mail address and phone number: not marketed to
-- again until its holder consents afresh.
CREATE TABLE suppressions (
    key           bytea PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('email', 'phone')),
    suppressed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE staff_access (
    id          uuid PRIMARY KEY,
    staff_id    uuid NOT NULL,
    person_id   uuid,
    customer_id uuid,
    reason      text NOT NULL,
    categories  text[] NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX staff_access_customer ON staff_access (customer_id);

CREATE TABLE outgoing_mail (
    id              uuid PRIMARY KEY,
    person_id       uuid REFERENCES people (id) ON DELETE CASCADE,
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
