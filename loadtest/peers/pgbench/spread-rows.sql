-- Holds spread out: every client takes one unit of a random item of the
-- 10,000, never below zero.
\set item random(1, 10000)
update stock set available = available - 1 where id = :item and available > 0;
