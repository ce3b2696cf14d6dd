-- The customer's language (issue 15): every mail accounts sends them is written in it, and
-- marketing keeps its copy in step (profile_changed). A registration carries the language
-- chosen until the account it creates exists.
ALTER TABLE accounts ADD COLUMN language text NOT NULL DEFAULT 'lv' CHECK (language IN ('lv', 'en'));
ALTER TABLE email_verifications ADD COLUMN language text CHECK (language IN ('lv', 'en'));

-- Password reset codes by hash, for a customer account (mailed to its address): one use, a
-- short life, only the newest of an account works.
CREATE TABLE password_resets (
    token_hash  bytea PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX password_resets_account ON password_resets (account_id);
