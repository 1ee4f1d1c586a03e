-- The issuing core: issuers and their keys, signing keys, series with gapless counters,
-- invoices (and credit notes) whose canonical content is stored as it was hashed, void records,
-- idempotency keys, and the pending delivery orders a postal invoice writes (its outbox row).

CREATE TABLE issuers (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    tax_id      text NOT NULL,
    region      char(4) NOT NULL CHECK (region ~ '^[0-9]{4}$'),
    address     text NOT NULL DEFAULT '',
    phone       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys of both kinds; only a SHA-256 of the key is kept (keys are 256-bit random).
CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('issuer', 'operator')),
    owner_id    uuid NOT NULL,
    prefix      text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_owner ON api_keys (kind, owner_id);

-- Every Ed25519 public key ever used to sign; published at /.well-known/jwks.json.
CREATE TABLE signing_keys (
    key_id      text PRIMARY KEY,
    public_key  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The 6-digit serial of invoice codes, per region and year, given in order of first use.
CREATE TABLE code_serials (
    region      char(4) NOT NULL,
    year        int NOT NULL,
    last_serial int NOT NULL CHECK (last_serial BETWEEN 1 AND 999999),
    PRIMARY KEY (region, year)
);

-- One series per issuer, label and year. last_number is the gapless counter (bumped with
-- UPDATE ... RETURNING inside the issuing transaction); last_seq/last_hash are the chain head
-- (invoices, credit notes and voids all take a chain position).
CREATE TABLE series (
    id           bigserial PRIMARY KEY,
    issuer_id    uuid NOT NULL REFERENCES issuers (id),
    label        text NOT NULL,
    year         int NOT NULL,
    invoice_code char(12) NOT NULL UNIQUE,
    last_number  int NOT NULL DEFAULT 0 CHECK (last_number BETWEEN 0 AND 99999999),
    last_seq     bigint NOT NULL DEFAULT 0,
    last_hash    char(64) NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (issuer_id, label, year)
);

CREATE TABLE invoices (
    id                  uuid PRIMARY KEY,
    seq                 bigserial UNIQUE,          -- list order and cursor
    issuer_id           uuid NOT NULL REFERENCES issuers (id),
    series_id           bigint NOT NULL REFERENCES series (id),
    chain_seq           bigint NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    invoice_code        char(12) NOT NULL,
    invoice_number      char(8) NOT NULL,
    issue_date          date NOT NULL,
    issued_at           timestamptz NOT NULL,
    status              text NOT NULL CHECK (status IN ('issued', 'voided', 'partially_credited', 'reversed')),
    total_amount        numeric(15, 2) NOT NULL,
    total_tax           numeric(15, 2) NOT NULL,
    total               numeric(15, 2) NOT NULL,
    delivery_method     text NOT NULL CHECK (delivery_method IN ('electronic', 'postal')),
    original_invoice_id uuid REFERENCES invoices (id),
    content             jsonb NOT NULL,            -- canonical content, exactly as hashed
    record_hash         char(64) NOT NULL UNIQUE,
    prev_hash           char(64) NOT NULL,
    signature           text NOT NULL,
    key_id              text NOT NULL REFERENCES signing_keys (key_id),
    times_verified      int NOT NULL DEFAULT 0,
    first_verified_at   timestamptz,
    voided_at           timestamptz,
    void_reason         text,
    UNIQUE (invoice_code, invoice_number),
    UNIQUE (series_id, chain_seq)
);
CREATE INDEX invoices_issuer_seq ON invoices (issuer_id, seq DESC);
CREATE INDEX invoices_issuer_date ON invoices (issuer_id, issue_date);
CREATE INDEX invoices_original ON invoices (original_invoice_id) WHERE original_invoice_id IS NOT NULL;

CREATE TABLE voids (
    id          bigserial PRIMARY KEY,
    series_id   bigint NOT NULL REFERENCES series (id),
    chain_seq   bigint NOT NULL,
    invoice_id  uuid NOT NULL UNIQUE REFERENCES invoices (id),
    content     jsonb NOT NULL,
    record_hash char(64) NOT NULL UNIQUE,
    prev_hash   char(64) NOT NULL,
    signature   text NOT NULL,
    key_id      text NOT NULL REFERENCES signing_keys (key_id),
    UNIQUE (series_id, chain_seq)
);

-- Idempotency-Key: the same key and body give back the same invoices.
CREATE TABLE idempotency_keys (
    issuer_id    uuid NOT NULL REFERENCES issuers (id),
    key          text NOT NULL,
    request_hash char(64) NOT NULL,
    invoice_ids  uuid[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer_id, key)
);

-- A postal invoice writes its delivery order in the issuing transaction: the row is the outbox.
CREATE TABLE delivery_orders (
    id              uuid PRIMARY KEY,
    invoice_id      uuid NOT NULL UNIQUE REFERENCES invoices (id),
    issuer_id       uuid NOT NULL REFERENCES issuers (id),
    status          text NOT NULL DEFAULT 'pending',
    province_code   char(2) NOT NULL,
    address         jsonb NOT NULL,
    phone           text,
    tracking_number text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_orders_pending ON delivery_orders (created_at) WHERE status = 'pending';
