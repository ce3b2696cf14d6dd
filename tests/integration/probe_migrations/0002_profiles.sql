-- What the probe knows of people from another service's events (erasure tests).
CREATE TABLE profiles (
    customer_id uuid PRIMARY KEY,
    name        text NOT NULL
);
