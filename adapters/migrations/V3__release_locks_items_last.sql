-- The release takes its items' locks last (issue 12, the expiry storm).
--
-- cartd_release_locked used to lock the items of the carts it releases
-- first, then delete their holds and the carts, then give the units back. A
-- storm's sweeper transactions release thousands of carts each, two at once,
-- and every one of them holds units of the same few items: the second waited
-- on the first's item locks through all of its deletes, so the batches ran
-- one after the other. Now the holds and the carts go first (rows no one else
-- can want: the carts are locked by the caller), and the items are locked,
-- in inventory_id order as everywhere else, only to add the units back just
-- before the commit. Lock order stays carts, then items, as in every other
-- writer, so this adds no deadlock.
create or replace function cartd_release_locked(p_carts uuid[]) returns bigint
language plpgsql as $$
declare
    v_items text[];
    v_units bigint[];
begin
    with h as (
        delete from holds where cart_id = any (p_carts) returning inventory_id, quantity
    )
    select array_agg(inventory_id order by inventory_id), array_agg(q order by inventory_id)
      into v_items, v_units
      from (select inventory_id, sum(quantity)::bigint as q from h group by inventory_id) s;
    delete from carts where cart_id = any (p_carts);
    if v_items is null then
        return 0;
    end if;
    perform 1 from items where inventory_id = any (v_items) order by inventory_id for update;
    update items i
       set available = i.available + s.q, reserved = i.reserved - s.q
      from unnest(v_items, v_units) as s(inventory_id, q)
     where i.inventory_id = s.inventory_id;
    return (select sum(q) from unnest(v_units) as u(q));
end
$$;
