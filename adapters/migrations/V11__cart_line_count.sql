-- Each cart row counts its lines (carts.lines), so the line limit is checked
-- without counting the cart's holds: count(*) cost grew with the cart (a few
-- index entries and, on rows not yet vacuumed, a heap visit each) and ran for
-- every new line. cartd_set_hold keeps the count (one cart write per call, as
-- before: the line count and a sliding deadline go in the same UPDATE) and the
-- planned batch path reads it with the cart's lock and writes it with the
-- cart's version. Releases and checkouts delete the cart row, count and all.
alter table carts add column lines integer not null default 0 check (lines >= 0);
update carts c set lines = h.n
  from (select cart_id, count(*)::integer as n from holds group by cart_id) h
 where c.cart_id = h.cart_id;

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
    v_added integer := 0;
    v_read_deadline bigint;
begin
    o_version := 0;
    o_deadline_ms := 0;
    o_available := 0;
    o_taken := 0;
    o_released := 0;
    update carts set version = version + 1
     where cart_id = p_cart and deadline_ms > p_now_ms
    returning version, deadline_ms, lines into o_version, v_deadline, v_lines;
    if not found then
        o_version := 0;  -- INTO left it null
        if exists (select 1 from carts where cart_id = p_cart) then
            -- Past its deadline: its holds go back now.
            perform cartd_release(p_cart);
        end if;
        o_status := 'session_not_found';
        return;
    end if;
    v_read_deadline := v_deadline;
    select inventory_id, quantity into v_old_inventory, v_old_quantity
      from holds where cart_id = p_cart and product_id = p_product;

    if p_quantity is not null then
        if v_old_inventory is null then
            if v_lines >= p_max_lines then
                if not exists (select 1 from items where inventory_id = p_inventory) then
                    o_status := 'unknown_item';
                else
                    o_status := 'too_many_lines';
                end if;
                return;
            end if;
        elsif v_old_inventory <> p_inventory then
            -- Two item rows: lock them in inventory_id order, as everywhere.
            perform 1 from items where inventory_id in (p_inventory, v_old_inventory) order by inventory_id for update;
        end if;
        v_need := p_quantity - case when v_old_inventory = p_inventory then v_old_quantity else 0 end;
        if v_need <> 0 or v_old_inventory is distinct from p_inventory then
            update items set available = available - v_need, reserved = reserved + v_need
             where inventory_id = p_inventory and available >= v_need;
            if not found then
                if not exists (select 1 from items where inventory_id = p_inventory) then
                    o_status := 'unknown_item';
                    return;
                end if;
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
        end if;
        if v_old_inventory is not null and v_old_inventory <> p_inventory then
            update items set available = available + v_old_quantity, reserved = reserved - v_old_quantity
             where inventory_id = v_old_inventory;
            o_taken := p_quantity;
            o_released := v_old_quantity;
        else
            o_taken := greatest(v_need, 0);
            o_released := greatest(-v_need, 0);
        end if;
        if v_old_inventory is null then
            insert into holds (cart_id, product_id, inventory_id, quantity)
            values (p_cart, p_product, p_inventory, p_quantity);
            v_added := 1;
        elsif v_old_inventory <> p_inventory or v_old_quantity <> p_quantity then
            update holds set inventory_id = p_inventory, quantity = p_quantity
             where cart_id = p_cart and product_id = p_product;
        end if;
    elsif v_old_inventory is not null then
        update items set available = available + v_old_quantity, reserved = reserved - v_old_quantity
         where inventory_id = v_old_inventory;
        delete from holds where cart_id = p_cart and product_id = p_product;
        o_released := v_old_quantity;
        v_added := -1;
    end if;

    if p_deadline_ms is not null and p_deadline_ms > v_deadline then
        v_deadline := p_deadline_ms;
    end if;
    if v_added <> 0 or v_deadline <> v_read_deadline then
        update carts set lines = lines + v_added, deadline_ms = v_deadline where cart_id = p_cart;
    end if;
    o_deadline_ms := v_deadline;
    o_status := 'ok';
end
$$;
