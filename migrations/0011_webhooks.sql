-- Issuers' webhooks (issue 15, Standard Webhooks v1). An endpoint is an issuer's URL, the event types it wants
-- and its signing secret (and, for 24 hours after a rotation, the previous one). An event is written once, in
-- the statement that causes it (INSERT_RECORDS, INSERT_VOID, verification's RECORD, delivery's UPDATE_ORDERS),
-- and only when its issuer has an endpoint that wants its type; the worker fans it out into one message per
-- matching endpoint (`webhook_messages`, the delivery state and lease) and logs every try (`webhook_attempts`).
CREATE TABLE webhook_endpoints (
    id                 uuid PRIMARY KEY,
    issuer_id          uuid NOT NULL REFERENCES issuers (id),
    url                text NOT NULL,
    events             text[] NOT NULL,
    description        text NOT NULL DEFAULT '',
    secret             text NOT NULL,             -- whsec_...: needed to sign, so stored as is; never logged
    old_secret         text,                      -- the secret before the last rotation ...
    old_secret_until   timestamptz,               -- ... signs beside the new one until then
    created_at         timestamptz NOT NULL DEFAULT now(),
    failing_since      timestamptz,               -- the first failed try since the last delivered one
    disabled_at        timestamptz,               -- failed for WEBHOOK_DISABLE_AFTER_S: nothing more is sent
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE  -- list order and cursor
);
CREATE INDEX webhook_endpoints_live ON webhook_endpoints (issuer_id) WHERE disabled_at IS NULL;

CREATE TABLE webhook_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id  text NOT NULL UNIQUE DEFAULT 'msg_' || replace(gen_random_uuid()::text, '-', ''),
    issuer_id   uuid NOT NULL,            -- no foreign key: the issuing statement pays for none
    type        text NOT NULL,
    data        jsonb NOT NULL,
    dedup_key   text UNIQUE,              -- events that happen once (first verification, a lock a day)
    created_at  timestamptz NOT NULL DEFAULT now(),
    fanned_out  boolean NOT NULL DEFAULT false
);
CREATE INDEX webhook_events_waiting ON webhook_events (id) WHERE NOT fanned_out;
CREATE INDEX webhook_events_age ON webhook_events (created_at);  -- pruning (WEBHOOK_LOG_DAYS)

CREATE TABLE webhook_messages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         bigint NOT NULL REFERENCES webhook_events (id),
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_at       timestamptz,                -- the lease of the worker sending it
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_messages_open ON webhook_messages (endpoint_id, next_attempt_at) WHERE status IN ('pending', 'sending');

CREATE TABLE webhook_attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id    uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id     bigint REFERENCES webhook_messages (id) ON DELETE CASCADE,  -- NULL: a notice (disabled)
    webhook_id     text,
    event_type     text NOT NULL,
    attempt        int NOT NULL DEFAULT 0,
    attempted_at   timestamptz NOT NULL DEFAULT now(),
    status_code    int,
    duration_ms    int,
    error          text,
    next_retry_at  timestamptz
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX webhook_attempts_age ON webhook_attempts (attempted_at);  -- pruning (WEBHOOK_LOG_DAYS)
