-- The language the shop and its carrier speak to the buyer in (a guest chooses it at checkout;
-- an account holder's is the account's).
ALTER TABLE orders ADD COLUMN language text NOT NULL DEFAULT 'lv' CHECK (language IN ('lv', 'en'));
