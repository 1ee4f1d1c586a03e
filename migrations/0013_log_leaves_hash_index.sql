-- A record's leaf is found through a hash index, not a B-tree (docs/scale-data.md, "A leaf by its record hash").
--
-- Every verification and every leaf lookup finds a record's leaf by its record hash, and the sequencer checks each
-- hash it appends against the log. Record hashes are random, so a B-tree over them is read at a random leaf page
-- for every lookup of a recent invoice as of an old one, and gets a level deeper as the log grows (5 buffers a
-- lookup at 1 M leaves, 135 MB of index). A hash index is read in two pages (its metapage and the key's bucket)
-- whatever the log's size, and holds a 4-byte hash code per leaf instead of the 64-character key: a third of the
-- size or less, so more of it stays in memory. Uniqueness is kept by an exclusion constraint on that index (a hash
-- index cannot be UNIQUE): an insider's duplicate leaf is refused as before.

ALTER TABLE log_leaves DROP CONSTRAINT log_leaves_record_hash_key;
ALTER TABLE log_leaves ADD CONSTRAINT log_leaves_record_hash_once EXCLUDE USING hash (record_hash WITH =);
