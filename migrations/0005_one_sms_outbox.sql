-- One SMS outbox for the whole service. Delivery's "your paper invoice was delivered" texts had a table of
-- their own (`delivery_sms`) with its own claim, retry and sweep; they now go into `sms_outbox` as kind
-- `delivered`, sent by the same job (`invoicing.sms_outbox.send_sms`). An invoice has at most one delivery
-- order, so "one delivered text per order" becomes one per invoice, like the buyer's notice.

ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_kind_check;
ALTER TABLE sms_outbox ADD CONSTRAINT sms_outbox_kind_check CHECK (kind IN ('receipt', 'buyer_notice', 'delivered'));
CREATE UNIQUE INDEX sms_outbox_one_delivered ON sms_outbox (invoice_id) WHERE kind = 'delivered';

-- Texts already written keep their state: sent, given up (5 attempts was delivery's limit) or still to send.
INSERT INTO sms_outbox (kind, invoice_id, phone, body, status, attempts, provider_id, last_error, created_at, sent_at)
SELECT 'delivered', d.invoice_id, s.phone, s.body,
       CASE WHEN s.sent_at IS NOT NULL THEN 'sent' WHEN s.attempts >= 5 THEN 'failed' ELSE 'pending' END,
       s.attempts, s.provider_id, s.last_error, s.created_at, s.sent_at
  FROM delivery_sms s JOIN delivery_orders d ON d.id = s.order_id
 ORDER BY s.created_at;

DROP TABLE delivery_sms;
