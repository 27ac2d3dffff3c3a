-- The batch prologue of V7 found the items its calls' lines hold with a join
-- of unnest(p_carts, p_products) against holds. PL/pgSQL caches that plan, and
-- with the estimates it was made on (holds small, as after a fresh start) it is
-- a hash join over a sequential scan of holds: every batch then read the whole
-- table. In a flash sale, where holds grows by thousands of rows a second,
-- batches got slower the longer the sale ran (perf showed PostgreSQL's time in
-- hash joins and visibility checks). Looking each line up by the primary key,
-- one scalar subquery per call, costs the same few index probes whatever the
-- table's size or statistics.
create or replace function cartd_set_hold_batch(p_carts uuid[], p_products text[], p_inventories text[],
                                                p_quantities integer[], p_deadlines bigint[], p_max_lines integer[],
                                                p_now_ms bigint[])
returns table (o_status text, o_version bigint, o_deadline_ms bigint, o_available bigint,
               o_taken integer, o_released integer)
language plpgsql as $$
begin
    perform 1 from carts where cart_id = any (p_carts) order by cart_id for update;
    perform 1 from items
     where inventory_id in (select unnest(p_inventories)
                            union
                            select (select h.inventory_id
                                      from holds h
                                     where h.cart_id = c.cart_id and h.product_id = c.product_id)
                              from unnest(p_carts, p_products) as c(cart_id, product_id))
     order by inventory_id
       for update;
    for i in 1 .. coalesce(cardinality(p_carts), 0) loop
        return query
            select h.o_status, h.o_version, h.o_deadline_ms, h.o_available, h.o_taken, h.o_released
              from cartd_set_hold(p_carts[i], p_products[i], p_inventories[i], p_quantities[i],
                                  p_deadlines[i], p_max_lines[i], p_now_ms[i]) h;
    end loop;
end
$$;
