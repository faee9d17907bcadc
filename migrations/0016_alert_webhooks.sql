-- Alert webhooks: a rule may name a URL that gets a JSON POST when one of its alerts opens or
-- resolves. Each delivery is a row written in the same transaction as the alert's change, so a
-- restart loses none; the alert_webhooks job sends the due ones and retries failures with backoff.

ALTER TABLE alert_rules ADD COLUMN webhook text
    CHECK (webhook IS NULL OR (webhook ~ '^https?://' AND length(webhook) <= 2048));

CREATE TABLE alert_deliveries (
    id           bigserial PRIMARY KEY,
    alert_id     bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    rule         text NOT NULL,
    url          text NOT NULL,
    event        text NOT NULL CHECK (event IN ('alert.open', 'alert.resolve')),
    payload      jsonb NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT now(),
    last_status  integer,              -- the last answer's HTTP status; NULL: none (transport failure)
    last_error   text,
    delivered_at timestamptz,
    given_up_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
