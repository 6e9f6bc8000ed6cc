-- The coupons example's own tables (applied by setupCoupons under example_coupons_migrations). Failure
-- records (PENDING / RESOLVED / IGNORED) are Lifeline's lifeline_failures, written by compensateOnFailure.

-- The coupons on offer: the source of truth for how many exist.
create table example_coupons (
  coupon_id   text        primary key,
  total_stock integer     not null check (total_stock >= 0),
  created_at  timestamptz not null default now()
);

-- One row per coupon issued (the DB side of the Redis issued set), written through the inbox.
create table example_coupon_issues (
  id        bigserial   primary key,
  coupon_id text        not null references example_coupons (coupon_id),
  user_id   text        not null,
  event_id  text        not null,
  issued_at timestamptz not null default now(),
  unique (coupon_id, user_id)
);
