-- The orders example's own tables (applied by setupOrders under example_orders_migrations).

-- One row per order: its state, bumped version (0 when created, +1 per applied transition) and amount.
create table example_orders (
  order_id      text        primary key,
  status        text        not null check (status in ('CREATED', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
  version       integer     not null default 0,
  amount        integer     not null,
  last_event_id text        not null,
  created_at    timestamptz not null default now()
);

-- The effect log: one row per transition applied, written in the inbox transaction. No unique constraint on
-- purpose: the inbox alone must keep an event from being applied twice, and this table would show it if not.
create table example_order_transitions (
  id         bigserial   primary key,
  order_id   text        not null,
  event_id   text        not null,
  status     text        not null,
  version    integer     not null,
  applied_at timestamptz not null default now()
);
create index example_order_transitions_order on example_order_transitions (order_id, id);
