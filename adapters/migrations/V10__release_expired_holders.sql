-- For the planned hold batch (adapters/src/postgres_store/plan.rs): when a
-- batch finds items short of stock, carts past their deadline that hold those
-- items are released first, as cartd_set_hold does for one item, so expired
-- holds never block. The batch's own carts (p_except) are live and already
-- locked by the caller; SKIP LOCKED leaves carts another transaction is
-- releasing or changing to it. Returns the units given back.
create function cartd_release_expired_holders(p_items text[], p_except uuid[], p_now_ms bigint)
returns bigint
language plpgsql as $$
declare
    v_expired uuid[];
begin
    select array_agg(c.cart_id) into v_expired from (
        select c2.cart_id from carts c2
         where c2.deadline_ms <= p_now_ms
           and c2.cart_id <> all (p_except)
           and exists (select 1 from holds h2
                        where h2.cart_id = c2.cart_id and h2.inventory_id = any (p_items))
           for update skip locked
    ) c;
    if v_expired is null then
        return 0;
    end if;
    return cartd_release_locked(v_expired);
end
$$;
