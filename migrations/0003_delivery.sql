-- Postal delivery: operators with their S10 serial ranges, manifests (one open per operator),
-- the fulfilment columns of delivery orders, tracking events and the delivery SMS outbox.

-- last_serial is the operator's S10 counter, bumped with UPDATE ... RETURNING in the fulfilment
-- transaction; a serial is never given twice (the range only moves forward).
CREATE TABLE operators (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    provinces    text[] NOT NULL,
    s10_service  char(2) NOT NULL CHECK (s10_service ~ '^[A-IL-RU-VX-Z][A-Z]$'),
    s10_country  char(2) NOT NULL CHECK (s10_country ~ '^[A-Z]{2}$'),
    serial_first int NOT NULL CHECK (serial_first BETWEEN 0 AND 99999999),
    serial_last  int NOT NULL CHECK (serial_last BETWEEN 0 AND 99999999),
    last_serial  int NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (serial_first <= serial_last),
    CHECK (last_serial BETWEEN serial_first - 1 AND serial_last)
);
CREATE INDEX operators_created ON operators (created_at, id);

CREATE SEQUENCE manifest_numbers;

CREATE TABLE manifests (
    id              uuid PRIMARY KEY,
    seq             bigint NOT NULL UNIQUE,
    operator_id     uuid NOT NULL REFERENCES operators (id),
    manifest_number text NOT NULL UNIQUE,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz
);
CREATE UNIQUE INDEX manifests_one_open ON manifests (operator_id) WHERE status = 'open';
CREATE INDEX manifests_operator_seq ON manifests (operator_id, seq DESC);

ALTER TABLE delivery_orders
    ADD COLUMN operator_id     uuid REFERENCES operators (id),
    ADD COLUMN manifest_id     uuid REFERENCES manifests (id),
    ADD COLUMN manifested_at   timestamptz,
    ADD COLUMN invoice_code    char(12),  -- copied from the invoice when manifested: a manifest reads one table
    ADD COLUMN invoice_number  char(8),
    ADD COLUMN signed_by       text,
    ADD COLUMN delivered_at    timestamptz,
    ADD COLUMN latest_event_at timestamptz;
CREATE INDEX delivery_orders_manifest ON delivery_orders (manifest_id, tracking_number) WHERE manifest_id IS NOT NULL;

CREATE TABLE tracking_events (
    id          bigserial PRIMARY KEY,
    operator_id uuid NOT NULL REFERENCES operators (id),
    event_id    text NOT NULL,
    order_id    uuid NOT NULL REFERENCES delivery_orders (id),
    status      text NOT NULL,
    occurred_at timestamptz NOT NULL,
    location    text NOT NULL,
    note        text NOT NULL DEFAULT '',
    signed_by   text,
    applied     boolean NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (operator_id, event_id)
);
CREATE INDEX tracking_events_order ON tracking_events (order_id, occurred_at);

-- "Your invoice was delivered" texts: written with the event, sent by the worker (never on the request path).
CREATE TABLE delivery_sms (
    order_id    uuid PRIMARY KEY REFERENCES delivery_orders (id),
    phone       text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    attempts    int NOT NULL DEFAULT 0,
    sent_at     timestamptz,
    provider_id text,
    last_error  text
);
CREATE INDEX delivery_sms_unsent ON delivery_sms (created_at) WHERE sent_at IS NULL;
