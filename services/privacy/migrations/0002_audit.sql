-- The audit log (P16, P17): every staff access to personal data in every service and every step
-- of every data-subject request, in a hash chain that shows any entry changed, removed or
-- reordered. Entries are written to audit_pending in the transaction that does the thing; the
-- chainer (services/privacy/audit.py) moves them into audit_log, one at a time in a batch,
-- each with the hash of the one before it. Entries name people by id only. (The chainer polls:
-- a NOTIFY per entry would serialise the commits of every transaction that writes one.)

CREATE TABLE audit_pending (
    id          bigserial PRIMARY KEY,
    source      text,                    -- what the entry records, once ('accounts:access:<id>')
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text NOT NULL CHECK (kind IN ('staff_access', 'request_step', 'audit')),
    service     text NOT NULL,
    actor       text NOT NULL,           -- 'staff:<id>', 'customer:<id>', 'guest', 'system'
    subject_id  uuid,                    -- the customer the entry is about, when one is known
    request_id  uuid,                    -- the data-subject request, for its steps
    categories  text[] NOT NULL DEFAULT '{}',
    action      text NOT NULL,
    reason      text,
    detail      jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE audit_log (
    seq         bigint PRIMARY KEY,
    source      text,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    service     text NOT NULL,
    actor       text NOT NULL,
    subject_id  uuid,
    request_id  uuid,
    categories  text[] NOT NULL,
    action      text NOT NULL,
    reason      text,
    detail      jsonb NOT NULL,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL
);
CREATE UNIQUE INDEX audit_log_source ON audit_log (source) WHERE source IS NOT NULL;
CREATE INDEX audit_log_subject ON audit_log (subject_id, seq) WHERE subject_id IS NOT NULL;
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_at ON audit_log (at);

-- The chain's end: locked by the chainer, so two instances never chain at once.
CREATE TABLE audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint NOT NULL,
    hash     bytea NOT NULL
);
INSERT INTO audit_head (seq, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

-- Checkpoints: the chain's end every so often (also logged, for the operator to keep
-- elsewhere), and where the retention sweep cut the oldest entries off.
CREATE TABLE audit_checkpoints (
    seq   bigint PRIMARY KEY,
    hash  bytea NOT NULL,
    kind  text NOT NULL CHECK (kind IN ('periodic', 'pruned')),
    at    timestamptz NOT NULL DEFAULT now()
);

-- Append-only: only the retention sweep deletes, and only with veikals.audit_prune set in its
-- transaction. (Someone who can drop a trigger can change rows; the chain shows that.)
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('veikals.audit_prune', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Every step of every data-subject request is recorded by the database itself, whatever code
-- path takes it. Who acted is veikals.actor, set in the transaction by a staff route
-- ('system' when unset: the task runner, a participant's event).
CREATE FUNCTION audit_actor(fallback text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('veikals.actor', true), ''), fallback)
$$;

CREATE FUNCTION audit_request_step() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    requester text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        requester := CASE NEW.source
            WHEN 'customer' THEN 'customer:' || NEW.customer_id
            WHEN 'guest' THEN 'guest'
            WHEN 'staff' THEN 'staff:' || NEW.staff_id
            ELSE 'system' END;
        INSERT INTO audit_pending (kind, service, actor, subject_id, request_id, action, detail)
        VALUES ('request_step', 'privacy', requester, NEW.customer_id, NEW.id, 'received',
                jsonb_build_object('kind', NEW.kind, 'source', NEW.source, 'due_at', NEW.due_at));
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO audit_pending (kind, service, actor, subject_id, request_id, action, detail)
        VALUES ('request_step', 'privacy', 'system', OLD.customer_id, OLD.id,
                'deleted at the end of its retention period', jsonb_build_object('kind', OLD.kind));
    ELSE
        IF NEW.due_at IS DISTINCT FROM OLD.due_at THEN
            INSERT INTO audit_pending (kind, service, actor, subject_id, request_id, action, reason, detail)
            VALUES ('request_step', 'privacy', audit_actor('system'), NEW.customer_id, NEW.id, 'deadline extended',
                    NEW.extension_reason, jsonb_build_object('months', NEW.extended_by_months, 'due_at', NEW.due_at));
        END IF;
        IF NEW.state IS DISTINCT FROM OLD.state THEN
            INSERT INTO audit_pending (kind, service, actor, subject_id, request_id, action, detail)
            VALUES ('request_step', 'privacy', audit_actor('system'), NEW.customer_id, NEW.id,
                    'request ' || NEW.state, jsonb_build_object('from', OLD.state, 'to', NEW.state));
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER requests_audit AFTER INSERT OR UPDATE OR DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION audit_request_step();

CREATE FUNCTION audit_task_step() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    customer uuid;
BEGIN
    SELECT customer_id INTO customer FROM requests WHERE id = NEW.request_id;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO audit_pending (kind, service, actor, subject_id, request_id, action, detail)
        VALUES ('request_step', 'privacy', 'system', customer, NEW.request_id, 'task created',
                jsonb_build_object('participant', NEW.participant));
    ELSIF NEW.state IS DISTINCT FROM OLD.state OR NEW.stage IS DISTINCT FROM OLD.stage THEN
        INSERT INTO audit_pending (kind, service, actor, subject_id, request_id, action, detail)
        VALUES ('request_step', 'privacy', audit_actor('system'), customer, NEW.request_id,
                'task ' || NEW.state || CASE WHEN NEW.stage = 'verify' THEN ' (verification)' ELSE '' END,
                jsonb_build_object('participant', NEW.participant, 'from', OLD.state, 'to', NEW.state,
                                   'stage', NEW.stage, 'attempts', NEW.attempts));
    ELSIF NEW.last_error IS DISTINCT FROM OLD.last_error AND NEW.last_error IS NOT NULL THEN
        INSERT INTO audit_pending (kind, service, actor, subject_id, request_id, action, detail)
        VALUES ('request_step', 'privacy', 'system', customer, NEW.request_id, 'task attempt failed',
                jsonb_build_object('participant', NEW.participant, 'attempts', NEW.attempts));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_audit AFTER INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION audit_task_step();

CREATE FUNCTION audit_export_step() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    customer uuid;
BEGIN
    SELECT customer_id INTO customer FROM requests WHERE id = NEW.request_id;
    INSERT INTO audit_pending (kind, service, actor, subject_id, request_id, action, detail)
    VALUES ('request_step', 'privacy', audit_actor('system'), customer, NEW.request_id,
            CASE WHEN TG_OP = 'INSERT' THEN 'export link issued' ELSE 'export downloaded' END,
            jsonb_build_object('downloads_left', NEW.downloads_left, 'expires_at', NEW.expires_at));
    RETURN NULL;
END $$;
CREATE TRIGGER export_links_audit AFTER INSERT OR UPDATE OF downloads_left ON export_links
    FOR EACH ROW EXECUTE FUNCTION audit_export_step();
