-- holds_by_item indexed holds by inventory_id, but no query looks holds up by
-- item alone: releases and checkouts find a cart's holds by the primary key
-- (cart_id first), the search for expired carts holding an item starts from
-- carts_by_deadline, and items are never deleted, so the foreign key never
-- searches holds by item either. The index only cost writes: every hold moved
-- to another item was a non-HOT update that inserted into two indexes.
-- Measured with wrk on set-line.lua (spread over 10,000 items, c64): 7.1-7.4k
-- holds/s with the index, 7.7-8.0k without (docs/perf.md).
drop index holds_by_item;
