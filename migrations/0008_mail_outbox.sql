-- The buyer's mail (issue 14): the invoice, its void and its credit notes e-mailed to `buyer.email`, with the
-- PDF attached. A row is written in the same statement as the record it announces (INSERT_RECORDS,
-- INSERT_VOID); the worker sends it over SMTP (`invoicing.mail_outbox`). At most one mail per record and kind:
-- (invoice_id, kind) is the key, and the mail's Message-ID is made from it, so a resend is recognisable.
CREATE TABLE mail_outbox (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('invoice', 'void', 'credit_note')),
    invoice_id       uuid NOT NULL REFERENCES invoices (id),  -- the invoice (invoice, void) or the credit note
    email            text NOT NULL,                           -- needed to send; never logged
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts         int NOT NULL DEFAULT 0,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),      -- backoff: not taken before this
    claimed_at       timestamptz,                             -- the lease of the worker sending it
    sent_at          timestamptz,
    UNIQUE (invoice_id, kind)
);
CREATE INDEX mail_outbox_unsent ON mail_outbox (next_attempt_at) WHERE status IN ('pending', 'sending');
