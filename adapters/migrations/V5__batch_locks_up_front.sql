-- A batch of holds takes every lock it can need before it changes anything:
-- its carts (by id), then every item its calls touch or its carts already
-- hold (by inventory_id). Calls inside the batch then only re-take locks the
-- transaction already has, so a batch never waits while holding a lock out of
-- order. Before this, a call that moved a line to a lower item, or released
-- its own expired cart, could lock an item below one the batch already held,
-- and deadlock with the sweeper (PostgreSQL detects it after a second and
-- aborts one side, which the adapter retries).
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
                            select h.inventory_id from holds h where h.cart_id = any (p_carts))
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
