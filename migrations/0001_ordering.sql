-- Lifeline's ordering state: parked keys, the records parked behind them, last applied sequences, and a
-- per-key history. Written by the consumer runtime, read and released by operators (`lifeline keys`).

-- A key is parked while a record of it (the head) is off the main path: in a retry tier or in the DLQ.
create table lifeline_parked_keys (
  group_id       text        not null,
  topic          text        not null,
  partition      integer     not null,
  key            bytea       not null,
  -- parked: later records of the key are stored behind the head; released: the head is done, the
  -- partition's owner replays the parked records in order and then deletes this row.
  status         text        not null check (status in ('parked', 'released')),
  head_offset    bigint      not null,
  -- A new token each time the head moves; a retry-tier record carrying an older token is stale.
  head_token     text        not null,
  head_location  text        not null,
  head_topic     text,
  head_error_code    text,
  head_error_message text,
  parked_at      timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  release_reason text,
  released_by    text,
  released_at    timestamptz,
  primary key (group_id, topic, key)
);
create index lifeline_parked_keys_partition on lifeline_parked_keys (group_id, topic, partition, status);

-- Records that arrived for a parked key: committed in Kafka once stored here, replayed in `id` order.
create table lifeline_parked_records (
  id          bigserial   primary key,
  group_id    text        not null,
  topic       text        not null,
  partition   integer     not null,
  key         bytea       not null,
  "offset"    bigint      not null,
  seq         bigint,
  value       bytea,
  headers     jsonb       not null,
  "timestamp" bigint      not null,
  parked_at   timestamptz not null default now(),
  unique (group_id, topic, partition, "offset")
);
create index lifeline_parked_records_key on lifeline_parked_records (group_id, topic, key, id);

-- The last handled sequence of each key (flushed before the offsets that cover it are committed).
create table lifeline_key_sequences (
  group_id   text        not null,
  topic      text        not null,
  partition  integer     not null,
  key        bytea       not null,
  last_seq   bigint      not null,
  updated_at timestamptz not null default now(),
  primary key (group_id, topic, key)
);
create index lifeline_key_sequences_partition on lifeline_key_sequences (group_id, topic, partition);

-- What happened to a key: parked, head moved, released, drained, gap skipped... (shown by `lifeline keys show`).
create table lifeline_key_events (
  id       bigserial   primary key,
  group_id text        not null,
  topic    text        not null,
  key      bytea       not null,
  event    text        not null,
  detail   jsonb       not null default '{}',
  actor    text,
  at       timestamptz not null default now()
);
create index lifeline_key_events_key on lifeline_key_events (group_id, topic, key, id);
