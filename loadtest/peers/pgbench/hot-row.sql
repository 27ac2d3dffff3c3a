-- The flash sale: every client takes one unit of item 1, never below zero
-- (the conditional update a hold needs, on one row).
update stock set available = available - 1 where id = 1 and available > 0;
