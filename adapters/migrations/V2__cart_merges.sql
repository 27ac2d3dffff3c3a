-- Carts merged into another (issue 15): which cart each went into, and what
-- the merge reported for lines that got less than asked, so that the same
-- merge retried after a lost answer returns the same report and moves
-- nothing. Kept for good, like orders. The merge itself runs in one
-- transaction of the adapter (adapters/src/postgres_store/merge.rs), by the
-- domain's merge rule (domain/src/merge.rs).
create table cart_merges (
    from_cart  uuid primary key,
    into_cart  uuid not null,
    products   text[] not null,
    requested  integer[] not null,
    granted    integer[] not null,
    reasons    text[] not null,
    merged_at  timestamptz not null default now()
);
