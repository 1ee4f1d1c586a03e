-- Verification counts move out of `invoices` into a narrow table of their own. An invoice row is the
-- signed record (~2 KB of content, eight indexes): bumping a counter in it wrote a whole new row version
-- and index entries for every verification (~2.2 KB of WAL each) and left the table bloated. A counts row
-- is ~60 bytes, has one index and no indexed column changes, so its updates stay on their page (HOT).
-- Rows are created by the first verification that counts something; no row means zero.

CREATE TABLE invoice_counts (
    invoice_id         uuid PRIMARY KEY REFERENCES invoices (id),
    times_verified     int NOT NULL DEFAULT 0,   -- verifications whose details matched (all channels)
    mismatches         int NOT NULL DEFAULT 0,   -- verifications with wrong details
    first_verified_at  timestamptz
) WITH (fillfactor = 70);

INSERT INTO invoice_counts (invoice_id, times_verified, mismatches, first_verified_at)
SELECT id, times_verified, mismatches, first_verified_at FROM invoices
 WHERE times_verified > 0 OR mismatches > 0;

ALTER TABLE invoices DROP COLUMN times_verified, DROP COLUMN first_verified_at, DROP COLUMN mismatches;
