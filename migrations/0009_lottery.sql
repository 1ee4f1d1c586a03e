-- The invoice lottery (issue 14, FORMATS.md "Lottery"). A period (`YYYY-MM`, Asia/Shanghai) gets its row, with
-- a random seed and its published commitment SHA-256(seed), in a transaction of its own that commits before its
-- first entry is accepted. Entries are numbered 1..N in registration order under the period row's lock
-- (`entries_count`). The draw stores the beacon, the entries root and the winners; the seed is shown only then.
CREATE TABLE lottery_periods (
    period         char(7) PRIMARY KEY CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    seed           bytea NOT NULL CHECK (length(seed) = 32),     -- secret until the draw
    commitment     char(64) NOT NULL,                            -- hex SHA-256(seed), public from the start
    entries_count  int NOT NULL DEFAULT 0,
    entries_root   bytea CHECK (length(entries_root) = 32),     -- set once registration has closed
    beacon         bytea,                                        -- the draw's public random value (may be empty)
    prizes         jsonb,                                        -- the prizes drawn for, fixed at the draw
    drawn_at       timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lottery_entries (
    entry_id        char(64) PRIMARY KEY,                        -- hex SHA-256 of IL-LOTTERY1|period|code|number
    period          char(7) NOT NULL REFERENCES lottery_periods (period),
    seq             int NOT NULL CHECK (seq >= 1),
    invoice_id      uuid NOT NULL UNIQUE REFERENCES invoices (id), -- once ever
    phone           text NOT NULL,                               -- E.164; winners are texted; never logged or shown
    registered_on   date NOT NULL,                               -- the Asia/Shanghai day: 10 entries a phone a day
    channel         text NOT NULL CHECK (channel IN ('web', 'json', 'sms')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (period, seq)
);
CREATE INDEX lottery_entries_phone_day ON lottery_entries (phone, registered_on);

CREATE TABLE lottery_winners (
    period    char(7) NOT NULL REFERENCES lottery_periods (period),
    rank      int NOT NULL CHECK (rank >= 1),                    -- draw order
    tier      int NOT NULL CHECK (tier >= 1),
    entry_id  char(64) NOT NULL REFERENCES lottery_entries (entry_id),
    PRIMARY KEY (period, rank),
    UNIQUE (period, entry_id)
);

-- Winners are texted through the one SMS outbox, at most once per entry.
ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_kind_check;
ALTER TABLE sms_outbox ADD CONSTRAINT sms_outbox_kind_check
    CHECK (kind IN ('receipt', 'buyer_notice', 'delivered', 'lottery_win'));
CREATE UNIQUE INDEX sms_outbox_one_lottery_win ON sms_outbox (invoice_id) WHERE kind = 'lottery_win';
