CREATE TABLE received (
    id          bigserial PRIMARY KEY,
    source      text  NOT NULL,
    event_type  text  NOT NULL,
    data        jsonb NOT NULL
);
