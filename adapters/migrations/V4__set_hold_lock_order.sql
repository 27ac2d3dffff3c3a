-- cartd_set_hold, unchanged but for one thing: a line moved to another item
-- locks both item rows in inventory_id order before touching either, as the
-- header of V1 promises. It used to lock the new item first, which could
-- deadlock with a transaction locking the two in the other order (PostgreSQL
-- then aborted one of them and the adapter retried it).

-- Sets the hold of one cart line: only the difference moves; a line moved to
-- another item gives back the old hold; p_quantity null removes the line.
-- A given deadline only ever moves the cart's deadline later.
-- The hold is conditional (available >= need), so stock never goes negative.
-- When stock is short, carts past their deadline that hold this item are
-- released first: expired holds never block.
create or replace function cartd_set_hold(p_cart uuid, p_product text, p_inventory text, p_quantity integer,
                               p_deadline_ms bigint, p_max_lines integer, p_now_ms bigint,
                               out o_status text, out o_version bigint, out o_deadline_ms bigint,
                               out o_available bigint, out o_taken integer, out o_released integer)
language plpgsql as $$
declare
    v_deadline bigint;
    v_old_inventory text;
    v_old_quantity integer;
    v_need bigint;
    v_lines integer;
    v_expired uuid[];
begin
    o_version := 0;
    o_deadline_ms := 0;
    o_available := 0;
    o_taken := 0;
    o_released := 0;
    select deadline_ms into v_deadline from carts where cart_id = p_cart for update;
    if not found then
        o_status := 'session_not_found';
        return;
    end if;
    if v_deadline <= p_now_ms then
        perform cartd_release_locked(array[p_cart]);
        o_status := 'session_not_found';
        return;
    end if;
    select inventory_id, quantity into v_old_inventory, v_old_quantity
      from holds where cart_id = p_cart and product_id = p_product;
    -- A line moving to another item touches two item rows: lock them in
    -- inventory_id order, like every other function, so it cannot deadlock.
    if p_quantity is not null and v_old_inventory is not null and v_old_inventory <> p_inventory then
        perform 1 from items where inventory_id in (p_inventory, v_old_inventory) order by inventory_id for update;
    end if;

    if p_quantity is not null then
        if not exists (select 1 from items where inventory_id = p_inventory) then
            o_status := 'unknown_item';
            return;
        end if;
        if v_old_inventory is null then
            select count(*) into v_lines from holds where cart_id = p_cart;
            if v_lines >= p_max_lines then
                o_status := 'too_many_lines';
                return;
            end if;
        end if;
        v_need := p_quantity - case when v_old_inventory = p_inventory then v_old_quantity else 0 end;
        if v_need > 0 then
            update items set available = available - v_need, reserved = reserved + v_need
             where inventory_id = p_inventory and available >= v_need;
            if not found then
                select array_agg(c.cart_id) into v_expired from (
                    select c2.cart_id from carts c2
                     where c2.deadline_ms <= p_now_ms
                       and c2.cart_id <> p_cart
                       and exists (select 1 from holds h2
                                    where h2.cart_id = c2.cart_id and h2.inventory_id = p_inventory)
                       for update skip locked
                ) c;
                if v_expired is not null then
                    perform cartd_release_locked(v_expired);
                    update items set available = available - v_need, reserved = reserved + v_need
                     where inventory_id = p_inventory and available >= v_need;
                end if;
                if v_expired is null or not found then
                    select available into o_available from items where inventory_id = p_inventory;
                    o_status := 'insufficient_stock';
                    return;
                end if;
            end if;
        elsif v_need < 0 then
            update items set available = available - v_need, reserved = reserved + v_need
             where inventory_id = p_inventory;
        end if;
        if v_old_inventory is not null and v_old_inventory <> p_inventory then
            update items set available = available + v_old_quantity, reserved = reserved - v_old_quantity
             where inventory_id = v_old_inventory;
        end if;
        if v_old_inventory is not null and v_old_inventory <> p_inventory then
            o_taken := p_quantity;
            o_released := v_old_quantity;
        else
            o_taken := greatest(v_need, 0);
            o_released := greatest(-v_need, 0);
        end if;
        insert into holds (cart_id, product_id, inventory_id, quantity)
        values (p_cart, p_product, p_inventory, p_quantity)
        on conflict (cart_id, product_id)
        do update set inventory_id = excluded.inventory_id, quantity = excluded.quantity;
    elsif v_old_inventory is not null then
        update items set available = available + v_old_quantity, reserved = reserved - v_old_quantity
         where inventory_id = v_old_inventory;
        delete from holds where cart_id = p_cart and product_id = p_product;
        o_released := v_old_quantity;
    end if;

    update carts set version = version + 1, deadline_ms = greatest(p_deadline_ms, deadline_ms)
     where cart_id = p_cart
    returning version, deadline_ms into o_version, o_deadline_ms;
    o_status := 'ok';
end
$$;

