-- cartd's stock, hold ledger and orders.
--
-- Every change of stock happens inside one of the functions below, so each is
-- one round trip and one transaction. Lock order is always: the cart row first,
-- then item rows in inventory_id order; that keeps concurrent holds, releases,
-- checkouts and sweeps from deadlocking one another.
--
-- Times are milliseconds since the Unix epoch, passed in by the service, so the
-- ledger's idea of "now" is the service's and tests can control it.

create table items (
    inventory_id text primary key,
    available    bigint not null check (available >= 0),
    reserved     bigint not null default 0 check (reserved >= 0),
    sold         bigint not null default 0 check (sold >= 0)
);

create table carts (
    cart_id     uuid primary key,
    deadline_ms bigint not null,
    version     bigint not null default 0
);
create index carts_by_deadline on carts (deadline_ms);

create table holds (
    cart_id      uuid not null references carts (cart_id) on delete cascade,
    product_id   text not null,
    inventory_id text not null references items (inventory_id),
    quantity     integer not null check (quantity > 0),
    primary key (cart_id, product_id)
);
create index holds_by_item on holds (inventory_id);

create table orders (
    cart_id    uuid primary key,
    order_id   uuid not null unique,
    created_at timestamptz not null default now()
);

create table order_lines (
    cart_id      uuid not null references orders (cart_id),
    product_id   text not null,
    inventory_id text not null references items (inventory_id),
    quantity     integer not null check (quantity > 0),
    primary key (cart_id, product_id)
);

-- Releases carts the caller has already locked: their holds go back to
-- `available` and the carts leave the ledger. Returns the units released.
create function cartd_release_locked(p_carts uuid[]) returns bigint
language plpgsql as $$
declare
    v_units bigint;
begin
    perform 1 from items
     where inventory_id in (select h.inventory_id from holds h where h.cart_id = any (p_carts))
     order by inventory_id
       for update;
    with h as (
        delete from holds where cart_id = any (p_carts) returning inventory_id, quantity
    ), s as (
        select inventory_id, sum(quantity) as q from h group by inventory_id
    ), u as (
        update items i
           set available = i.available + s.q, reserved = i.reserved - s.q
          from s
         where i.inventory_id = s.inventory_id
        returning s.q
    )
    select coalesce(sum(q), 0) into v_units from u;
    delete from carts where cart_id = any (p_carts);
    return v_units;
end
$$;

-- Releases one cart. Idempotent: only the transaction that removes the cart
-- row returns its stock; a concurrent or later call finds no row and returns 0.
create function cartd_release(p_cart uuid) returns bigint
language plpgsql as $$
begin
    perform 1 from carts where cart_id = p_cart for update;
    if not found then
        return 0;
    end if;
    return cartd_release_locked(array[p_cart]);
end
$$;

-- Releases up to p_limit carts past their deadline. SKIP LOCKED lets every
-- instance sweep at once without two of them taking the same cart.
create function cartd_release_expired(p_now_ms bigint, p_limit integer,
                                      out o_carts bigint, out o_units bigint)
language plpgsql as $$
declare
    v_ids uuid[];
begin
    select array_agg(cart_id) into v_ids from (
        select cart_id from carts
         where deadline_ms <= p_now_ms
         order by deadline_ms
         limit p_limit
           for update skip locked
    ) e;
    if v_ids is null then
        o_carts := 0;
        o_units := 0;
        return;
    end if;
    o_carts := cardinality(v_ids);
    o_units := cartd_release_locked(v_ids);
end
$$;

-- Sets the hold of one cart line: only the difference moves; a line moved to
-- another item gives back the old hold; p_quantity null removes the line.
-- A given deadline only ever moves the cart's deadline later.
-- The hold is conditional (available >= need), so stock never goes negative.
-- When stock is short, carts past their deadline that hold this item are
-- released first: expired holds never block.
create function cartd_set_hold(p_cart uuid, p_product text, p_inventory text, p_quantity integer,
                               p_deadline_ms bigint, p_max_lines integer, p_now_ms bigint,
                               out o_status text, out o_version bigint, out o_deadline_ms bigint,
                               out o_available bigint)
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
        insert into holds (cart_id, product_id, inventory_id, quantity)
        values (p_cart, p_product, p_inventory, p_quantity)
        on conflict (cart_id, product_id)
        do update set inventory_id = excluded.inventory_id, quantity = excluded.quantity;
    elsif v_old_inventory is not null then
        update items set available = available + v_old_quantity, reserved = reserved - v_old_quantity
         where inventory_id = v_old_inventory;
        delete from holds where cart_id = p_cart and product_id = p_product;
    end if;

    update carts set version = version + 1, deadline_ms = greatest(p_deadline_ms, deadline_ms)
     where cart_id = p_cart
    returning version, deadline_ms into o_version, o_deadline_ms;
    o_status := 'ok';
end
$$;

-- Turns a cart's holds into sales and records the order, or returns the order
-- an earlier checkout of the same cart made. It locks the cart row first, as
-- release does, so checkout and release of one cart serialize: whichever runs
-- second finds the cart gone.
create function cartd_checkout(p_cart uuid, p_order uuid, p_now_ms bigint,
                               out o_status text, out o_order uuid, out o_created boolean,
                               out o_products text[], out o_items text[], out o_quantities integer[])
language plpgsql as $$
declare
    v_deadline bigint;
begin
    o_created := false;
    select deadline_ms into v_deadline from carts where cart_id = p_cart for update;
    if not found then
        select order_id into o_order from orders where cart_id = p_cart;
        if not found then
            o_status := 'session_not_found';
            return;
        end if;
        select array_agg(product_id order by product_id), array_agg(inventory_id order by product_id),
               array_agg(quantity order by product_id)
          into o_products, o_items, o_quantities
          from order_lines where cart_id = p_cart;
        o_status := 'ok';
        return;
    end if;
    if v_deadline <= p_now_ms then
        perform cartd_release_locked(array[p_cart]);
        o_status := 'session_not_found';
        return;
    end if;
    if not exists (select 1 from holds where cart_id = p_cart) then
        o_status := 'cart_empty';
        return;
    end if;
    perform 1 from items
     where inventory_id in (select h.inventory_id from holds h where h.cart_id = p_cart)
     order by inventory_id
       for update;
    insert into orders (cart_id, order_id) values (p_cart, p_order);
    with h as (
        delete from holds where cart_id = p_cart returning product_id, inventory_id, quantity
    ), l as (
        insert into order_lines (cart_id, product_id, inventory_id, quantity)
        select p_cart, product_id, inventory_id, quantity from h
    ), s as (
        select inventory_id, sum(quantity) as q from h group by inventory_id
    ), u as (
        update items i
           set reserved = i.reserved - s.q, sold = i.sold + s.q
          from s
         where i.inventory_id = s.inventory_id
    )
    select array_agg(product_id order by product_id), array_agg(inventory_id order by product_id),
           array_agg(quantity order by product_id)
      into o_products, o_items, o_quantities
      from h;
    delete from carts where cart_id = p_cart;
    o_order := p_order;
    o_created := true;
    o_status := 'ok';
end
$$;
