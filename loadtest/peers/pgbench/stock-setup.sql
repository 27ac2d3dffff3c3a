-- The stock table for hot-row.sql and spread-rows.sql: 10,000 items, each
-- with far more units than a run can take. Run again to start afresh.
drop table if exists stock;
create table stock (id integer primary key, available integer not null);
insert into stock (id, available) select n, 1000000000 from generate_series(1, 10000) as n;
