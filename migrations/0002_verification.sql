-- Verification (issue 4): the log of every verification, the SMS outbox, inbound de-duplication,
-- and a per-invoice mismatch count for the issuer's figures. Client addresses and phones are stored
-- only as keyed hashes (HMAC-SHA256 with the server secret) in `verifications`; the outbox keeps the
-- destination phone because it must send to it.

ALTER TABLE invoices ADD COLUMN mismatches int NOT NULL DEFAULT 0;

CREATE TABLE verifications (
    id           bigserial PRIMARY KEY,
    invoice_id   uuid REFERENCES invoices (id),      -- NULL when no invoice has the code and number
    issuer_id    uuid REFERENCES issuers (id),
    channel      text NOT NULL CHECK (channel IN ('web', 'json', 'sms')),
    outcome      text NOT NULL CHECK (outcome IN ('valid', 'mismatch', 'not_found', 'voided', 'reversed',
                                                  'partially_credited', 'locked', 'tampered')),
    counted      boolean NOT NULL,                   -- details matched: counted in invoices.times_verified
    via_qr       boolean NOT NULL DEFAULT false,     -- opened from a QR URL whose signature checked
    client_hash  text,                               -- HMAC of the client address
    phone_hash   text,                               -- HMAC of the E.164 phone (receipt or SMS sender)
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX verifications_invoice ON verifications (invoice_id, created_at);
CREATE INDEX verifications_issuer ON verifications (issuer_id, created_at);

CREATE TABLE sms_outbox (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('receipt', 'buyer_notice')),
    invoice_id   uuid REFERENCES invoices (id),
    phone        text NOT NULL,                      -- E.164, needed to send; never logged
    body         text NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts     int NOT NULL DEFAULT 0,
    provider_id  text,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    claimed_at   timestamptz,
    sent_at      timestamptz
);
CREATE INDEX sms_outbox_unsent ON sms_outbox (created_at) WHERE status IN ('pending', 'sending');
-- the buyer hears once, the first time someone else verifies their invoice
CREATE UNIQUE INDEX sms_outbox_one_notice ON sms_outbox (invoice_id) WHERE kind = 'buyer_notice';

CREATE TABLE sms_inbound (
    message_sid  text PRIMARY KEY,
    reply        text,                               -- NULL while the first delivery is being answered
    received_at  timestamptz NOT NULL DEFAULT now()
);
