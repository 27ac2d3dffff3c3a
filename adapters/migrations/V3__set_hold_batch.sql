-- Many holds in one round trip and one transaction: the adapter groups the
-- set_hold requests that arrive while a batch is running. One commit then
-- covers them all, and holds on a hot item take its row lock once per batch
-- instead of queueing for it one transaction at a time. Results come back in
-- the order of the arrays.
create function cartd_set_hold_batch(p_carts uuid[], p_products text[], p_inventories text[],
                                     p_quantities integer[], p_deadlines bigint[], p_max_lines integer[],
                                     p_now_ms bigint[])
returns table (o_status text, o_version bigint, o_deadline_ms bigint, o_available bigint,
               o_taken integer, o_released integer)
language plpgsql as $$
begin
    perform 1 from carts where cart_id = any (p_carts) order by cart_id for update;
    for i in 1 .. coalesce(cardinality(p_carts), 0) loop
        return query
            select h.o_status, h.o_version, h.o_deadline_ms, h.o_available, h.o_taken, h.o_released
              from cartd_set_hold(p_carts[i], p_products[i], p_inventories[i], p_quantities[i],
                                  p_deadlines[i], p_max_lines[i], p_now_ms[i]) h;
    end loop;
end
$$;
