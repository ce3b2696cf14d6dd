-- A state-changing RPC call's key with the reply it made: a redelivered request gets that
-- reply back instead of running again. Pruned after a week (replies may hold personal data).
CREATE TABLE rpc_calls (
    method      text        NOT NULL,
    key         text        NOT NULL,
    reply       bytea       NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, key)
);
CREATE INDEX rpc_calls_created ON rpc_calls (created_at);

-- The data subject an event is about (a keyed hash): an erasure deletes the subject's events.
ALTER TABLE outbox ADD COLUMN subject bytea;
CREATE INDEX outbox_subject ON outbox (subject) WHERE subject IS NOT NULL;

-- Publisher: the last version given to an event about each subject (commit order).
CREATE TABLE subject_versions (
    subject     bytea       PRIMARY KEY,
    version     bigint      NOT NULL
);

-- Consumer: the newest version a handler applied for each subject.
CREATE TABLE subject_versions_seen (
    consumer    text        NOT NULL,
    subject     bytea       NOT NULL,
    version     bigint      NOT NULL,
    PRIMARY KEY (consumer, subject)
);
CREATE INDEX subject_versions_seen_subject ON subject_versions_seen (subject);

-- Tombstones: subjects this service erased; late events about them are dropped.
CREATE TABLE erased_subjects (
    subject     bytea       PRIMARY KEY,
    erased_at   timestamptz NOT NULL
);
