-- A row that failed to publish waits before it is tried again, so it cannot hold up the rest.
ALTER TABLE outbox ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_due ON outbox (next_attempt_at, seq) WHERE published_at IS NULL;
-- Published rows and inbox entries are pruned after a while (bodies may hold personal data).
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX inbox_handled ON inbox (handled_at);
