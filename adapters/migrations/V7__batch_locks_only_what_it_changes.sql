-- The batch prologue of V5 locked every item the batch's carts held. With big
-- carts (hundreds of lines) that is thousands of row locks per batch, and
-- batches then wait on each other for items they never change. Lock only the
-- items the calls change: each call's new item and the item its line held
-- before. (A call on a cart past its deadline releases that cart's other
-- items too; that rare path may still take a lock out of order, and a
-- deadlock there is retried.)
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
                            select h.inventory_id
                              from holds h
                              join unnest(p_carts, p_products) as c(cart_id, product_id)
                                on h.cart_id = c.cart_id and h.product_id = c.product_id)
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
