-- The closed-loop figures (issue 15) come from a narrow rollup kept as invoices are issued, voided, first
-- verified and delivered or returned, not from scans of all invoices: the issuer's figures, `invoiceloop stats`
-- and the public page read a few hundred rows however many invoices there are.
--
-- A row is one issuer's invoices of one issue month (their `issue_date`, a Shanghai calendar day) in one
-- province and one series. The province is the seller's (the first two digits of the issuer's GB/T 2260 region,
-- which every invoice has; a buyer's address is only on postal invoices). The series is in the key so that
-- issuing never waits on a rollup row: a series is already issued under its head's row lock, so the rollup
-- row of that series is only ever written by one issuing transaction at a time (two series of one issuer, or
-- many issuers, never share one). Verifications and tracking events move a row once per invoice at most
-- (its first verification; its delivery or return, both final).
--
-- Figures are of an issue-month cohort: `verified` counts the month's invoices that have been verified at
-- least once, whenever that happened. `amount` is the total (with tax) of every invoice issued; `voided_amount`
-- what was voided of it; `credited` the (negative) total of the credit notes.

CREATE TABLE loop_rollups (
    issuer_id      uuid NOT NULL REFERENCES issuers (id),
    month          date NOT NULL CHECK (extract(day FROM month) = 1),
    province       char(2) NOT NULL,
    series_id      bigint NOT NULL REFERENCES series (id),
    issued         int NOT NULL DEFAULT 0,            -- invoices (not credit notes), voided ones included
    amount         numeric(17, 2) NOT NULL DEFAULT 0, -- their total with tax
    voided         int NOT NULL DEFAULT 0,            -- invoices voided (a credit note is never voided)
    voided_amount  numeric(17, 2) NOT NULL DEFAULT 0, -- total of the voided invoices
    credit_notes   int NOT NULL DEFAULT 0,
    credited       numeric(17, 2) NOT NULL DEFAULT 0, -- total of the credit notes (negative)
    postal         int NOT NULL DEFAULT 0,            -- postal invoices not voided
    verified       int NOT NULL DEFAULT 0,            -- invoices not voided, verified at least once
    mismatches     int NOT NULL DEFAULT 0,            -- verifications with wrong details
    delivered      int NOT NULL DEFAULT 0,
    returned       int NOT NULL DEFAULT 0,            -- returned_to_sender
    PRIMARY KEY (issuer_id, month, province, series_id)
) WITH (fillfactor = 70);

-- From what exists already: one pass over the invoices, the last one.
INSERT INTO loop_rollups (issuer_id, month, province, series_id, issued, amount, voided, voided_amount,
                          credit_notes, credited, postal, verified, mismatches, delivered, returned)
SELECT i.issuer_id, date_trunc('month', i.issue_date)::date, left(s.region, 2), i.series_id,
       count(*) FILTER (WHERE i.kind = 'invoice'),
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'invoice'), 0),
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status = 'voided'),
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'invoice' AND i.status = 'voided'), 0),
       count(*) FILTER (WHERE i.kind = 'credit_note'),
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'credit_note'), 0),
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided' AND i.delivery_method = 'postal'),
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided' AND k.times_verified > 0),
       coalesce(sum(k.mismatches), 0),
       count(d.id) FILTER (WHERE d.status = 'delivered'),
       count(d.id) FILTER (WHERE d.status = 'returned_to_sender')
  FROM invoices i
  JOIN issuers s ON s.id = i.issuer_id
  LEFT JOIN invoice_counts k ON k.invoice_id = i.id
  LEFT JOIN delivery_orders d ON d.invoice_id = i.id
 GROUP BY 1, 2, 3, 4;
