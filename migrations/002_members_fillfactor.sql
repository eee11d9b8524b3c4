-- Leave 30% of each members page free, so that replacing a member's phone number (a newer
-- watermark) can be a HOT update: the new row version goes on the same page and the primary key
-- index is not touched. With full pages every such update also inserted an index entry and wrote
-- more WAL; in batched upserts updates cost about twice a first insert. Applies to pages written
-- from now on (existing pages keep their layout until the table is rewritten).
ALTER TABLE members SET (fillfactor = 70);
