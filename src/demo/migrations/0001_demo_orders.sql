-- The demo's own table: one row per order event the demo consumer applied.
create table if not exists demo_orders (
  order_id text primary key,
  status text not null,
  amount integer not null,
  source_topic text not null,
  source_partition integer not null,
  source_offset bigint not null,
  applied_at timestamptz not null default now()
);
