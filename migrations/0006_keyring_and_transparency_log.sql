-- Trust leaves the database, and every chain record goes into a public append-only log.
--
-- 1. The keys that make a signature valid now come from the keyring (INVOICELOOP_KEYRING), outside the
--    database: a key an insider writes here would prove nothing. `signing_keys` and the foreign keys to it go.
--    Upgrading a deployment whose keys were rotated before: add the public keys you trust to the keyring
--    (`invoiceloop keys trust`) before this migration, or their invoices will verify as tampered.
-- 2. The transparency log (RFC 9162 hashing, C2SP tlog-tiles layout): records wait in `log_queue`, written in
--    the transaction that appends them to their chain; the worker's sequencer moves them into the log in
--    batches. `log_tiles` holds one blob per (level, index) (level -1: entry bundles), which only grows; a
--    tile of a given width is its prefix and never changes. `log_leaves` finds a record's leaf index.
--    `log_head` is the latest signed checkpoint.

ALTER TABLE invoices DROP CONSTRAINT invoices_key_id_fkey;
ALTER TABLE voids DROP CONSTRAINT voids_key_id_fkey;
DROP TABLE signing_keys;

CREATE TABLE log_queue (
    id          bigserial PRIMARY KEY,
    record_hash char(64) NOT NULL
);

CREATE TABLE log_leaves (
    leaf_index   bigint PRIMARY KEY,
    record_hash  char(64) NOT NULL UNIQUE,
    sequenced_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE log_tiles (
    level int NOT NULL CHECK (level >= -1),
    idx   bigint NOT NULL CHECK (idx >= 0),
    data  bytea NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE log_head (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    size       bigint NOT NULL CHECK (size >= 0),
    root       bytea NOT NULL,
    checkpoint text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Records already issued join the log in chain order, series by series.
INSERT INTO log_queue (id, record_hash)
SELECT row_number() OVER (ORDER BY series_id, chain_seq), record_hash
  FROM (SELECT series_id, chain_seq, record_hash FROM invoices
        UNION ALL SELECT series_id, chain_seq, record_hash FROM voids) AS r;
SELECT setval('log_queue_id_seq', coalesce((SELECT max(id) FROM log_queue), 0) + 1, false);
