-- The buyer's text (issue 14 item 1): with a buyer phone and electronic delivery, the invoice, its void and each
-- credit note are texted to the buyer with a signed download link (`invoicing.buyer_texts`), through the one SMS
-- outbox. The row is written in the statement that writes the record (INSERT_RECORDS, INSERT_VOID), with the same
-- kinds as `mail_outbox`; at most one text per record and kind.
--
-- The kinds are added to whatever the check allows when this runs (written as ARRAY['a'::text, ...] or as
-- '{a,b}'), not written out in full, so kinds another migration added (the lottery's texts) are kept.
DO $$
DECLARE
    kinds text[];
BEGIN
    SELECT array_agg(DISTINCT k ORDER BY k) INTO kinds
      FROM (SELECT (regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''|[{,]([a-z_]+)(?=[,}])', 'g')) AS m
              FROM pg_constraint c
             WHERE c.conrelid = 'sms_outbox'::regclass AND c.conname = 'sms_outbox_kind_check') AS found,
           LATERAL (SELECT coalesce(m[1], m[2]) AS k) AS one
     WHERE k IS NOT NULL;
    kinds := ARRAY(SELECT DISTINCT unnest(kinds || ARRAY['invoice', 'void', 'credit_note']) ORDER BY 1);
    ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_kind_check;
    EXECUTE format('ALTER TABLE sms_outbox ADD CONSTRAINT sms_outbox_kind_check CHECK (kind = ANY (%L::text[]))', kinds);
END $$;

CREATE UNIQUE INDEX sms_outbox_one_buyer_text ON sms_outbox (invoice_id, kind)
    WHERE kind IN ('invoice', 'void', 'credit_note');
