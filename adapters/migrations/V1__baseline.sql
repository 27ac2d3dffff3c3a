-- cartd's stock, hold ledger and orders: the baseline schema.
--
-- One migration describes the schema as it is. It replaces twelve development
-- migrations (V1..V12, never released) that redefined the same functions whole;
-- why each choice below was made, and what it measured, is in the commit
-- history and in docs/perf.md. A database that recorded those twelve must be
-- reset (docs/operations.md, "A database made before the baseline").
--
-- Every change of stock happens inside one of the functions below, or in the
-- planned hold batch (adapters/src/postgres_store/holds/), which follows
-- the same rule (domain/src/hold.rs) and is pinned to cartd_set_hold by a
-- differential test (adapters/tests/postgres_batch.rs). Each function is one
-- round trip and one transaction. Lock order is always: cart rows first (by
-- cart_id), then item rows in inventory_id order; that keeps concurrent holds,
-- releases, checkouts and sweeps from deadlocking one another.
--
-- Times are milliseconds since the Unix epoch, passed in by the service, so the
-- ledger's idea of "now" is the service's and tests can control it.

create table items (
    inventory_id text primary key,
    available    bigint not null check (available >= 0),
    reserved     bigint not null default 0 check (reserved >= 0),
    sold         bigint not null default 0 check (sold >= 0)
);

-- `lines` counts the cart's holds, so the line limit is checked without
-- counting them (count(*) grew with the cart); it is written with the cart's
-- version, in the same UPDATE. The version grows with every call on a live
-- cart, granted or refused: versions only need to grow.
create table carts (
    cart_id     uuid primary key,
    deadline_ms bigint not null,
    version     bigint not null default 0,
    lines       integer not null default 0 check (lines >= 0)
);
-- The sweeper and the search for expired holders of an item start here.
create index carts_by_deadline on carts (deadline_ms);

-- No index by inventory_id: no query looks holds up by item alone (releases
-- and checkouts go by cart_id, the primary key's prefix; items are never
-- deleted, so the foreign key never searches by item). One cost writes only:
-- measured 7.1-7.4k holds/s with it, 7.7-8.0k without (docs/perf.md).
create table holds (
    cart_id      uuid not null references carts (cart_id) on delete cascade,
    product_id   text not null,
    inventory_id text not null references items (inventory_id),
    quantity     integer not null check (quantity > 0),
    primary key (cart_id, product_id)
);

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
-- row returns its stock; a concurrent or later call finds no row and returns
-- 0 units and no deadline (the deadline lets callers measure release lag).
create function cartd_release(p_cart uuid, out o_units bigint, out o_deadline_ms bigint)
language plpgsql as $$
begin
    o_units := 0;
    select deadline_ms into o_deadline_ms from carts where cart_id = p_cart for update;
    if not found then
        return;
    end if;
    o_units := cartd_release_locked(array[p_cart]);
end
$$;

-- Releases up to p_limit carts past their deadline, oldest first, with their
-- deadlines. SKIP LOCKED lets every instance sweep at once without two of
-- them taking the same cart.
create function cartd_release_expired(p_now_ms bigint, p_limit integer,
                                      out o_carts bigint, out o_units bigint, out o_deadlines bigint[])
language plpgsql as $$
declare
    v_ids uuid[];
begin
    select array_agg(cart_id), array_agg(deadline_ms) into v_ids, o_deadlines from (
        select cart_id, deadline_ms from carts
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

-- For the planned hold batch: when a batch finds items short of stock, carts
-- past their deadline that hold those items are released first, as
-- cartd_set_hold does for one item, so expired holds never block. The batch's
-- own carts (p_except) are live and already locked by the caller; SKIP LOCKED
-- leaves carts another transaction is releasing or changing to it. Returns
-- the units given back.
-- It runs inside a transaction that turns sequential scans and hash/merge
-- joins off; the carts past their deadline are few (the sweeper releases them
-- every interval), so they are read first, from the deadline index, in a
-- materialized CTE the planner cannot fold back into a join order of its own
-- (otherwise the generic plan walked every hold by primary key: 40 ms a call
-- during a sold-out flash sale). Only their holds are then looked at.
create function cartd_release_expired_holders(p_items text[], p_except uuid[], p_now_ms bigint)
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

-- Sets the hold of one cart line: the reference implementation of the hold
-- rule (domain/src/hold.rs). Only the difference moves; a line moved to
-- another item gives back the old hold; p_quantity null removes the line; a
-- new line must fit p_max_lines; a given deadline only ever moves the cart's
-- deadline later. The hold is conditional (available >= need), so stock never
-- goes negative. When stock is short, carts past their deadline that hold
-- this item are released first: expired holds never block.
-- Few statements on the common paths, since a batch costs what its calls cost
-- (~0.2 ms of PL/pgSQL per hold): one UPDATE finds the cart, checks its
-- deadline and bumps its version (a refused call takes a version too); the
-- conditional stock UPDATE also tells an unknown item apart; a line moved to
-- another item locks both item rows in inventory_id order before touching
-- either; the cart row is written again only when its line count or deadline
-- moves.
create function cartd_set_hold(p_cart uuid, p_product text, p_inventory text, p_quantity integer,
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

-- Many holds in one round trip and one transaction (the reference path of the
-- hold batch, and its fallback for a batch that meets a cart past its
-- deadline). Results come back in the order of the arrays. It takes every
-- lock its calls change before changing anything: its carts by id, then each
-- call's new item and the item its line held before, by inventory_id (only
-- those: locking every item of big carts made batches wait on each other).
-- Each line is looked up by the primary key, one scalar subquery per call,
-- because PL/pgSQL caches plans: a join made on the estimates of a fresh start
-- scanned the whole holds table in every batch.
create function cartd_set_hold_batch(p_carts uuid[], p_products text[], p_inventories text[],
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
