-- cartd_release_expired_holders runs inside a planned hold batch, whose
-- transaction turns sequential scans and hash/merge joins off. With those off,
-- PL/pgSQL's generic plan for its query walked the whole holds table by its
-- primary key, filtering on the item (auto_explain during a sold-out flash
-- sale: 40 ms a call, 85,000 rows read and thrown away to find none), so
-- every batch that met a sold-out item took tens of milliseconds and the
-- refusals of a flash sale ran ten times slower than its holds. The carts
-- past their deadline are few (the sweeper releases them every interval), so
-- they are read first, from the deadline index, in a materialized CTE the
-- planner cannot fold back into a join order of its own; only their holds
-- are then looked at, by the primary key's cart_id prefix.
create or replace function cartd_release_expired_holders(p_items text[], p_except uuid[], p_now_ms bigint)
returns bigint
language plpgsql as $$
declare
    v_expired uuid[];
begin
    with expired as materialized (
        select e.cart_id from carts e
         where e.deadline_ms <= p_now_ms
           and e.cart_id <> all (p_except)
    )
    select array_agg(c.cart_id) into v_expired from (
        select c2.cart_id from expired x
          join carts c2 on c2.cart_id = x.cart_id
         where c2.deadline_ms <= p_now_ms -- rechecked on the row version it locks
           and exists (select 1 from holds h2
                        where h2.cart_id = x.cart_id and h2.inventory_id = any (p_items))
           for update of c2 skip locked
    ) c;
    if v_expired is null then
        return 0;
    end if;
    return cartd_release_locked(v_expired);
end
$$;
