-- Effects exactly once under redelivery: the inbox of claimed event ids, consumed positions stored with the
-- effects, events ignored by guards (late or stale), and failure records with their compensations.

-- One row per event id a consumer applied: claimed in the same transaction as the event's effects.
create table lifeline_inbox (
  consumer     text        not null,
  event_id     text        not null,
  topic        text        not null,
  partition    integer     not null,
  "offset"     bigint      not null,
  processed_at timestamptz not null default now(),
  primary key (consumer, event_id)
);
create index lifeline_inbox_processed on lifeline_inbox (consumer, processed_at);

-- The next offset to read per partition, written in the same transaction as the effects (storeOffsets).
create table lifeline_consumer_offsets (
  consumer    text        not null,
  topic       text        not null,
  partition   integer     not null,
  next_offset bigint      not null,
  updated_at  timestamptz not null default now(),
  primary key (consumer, topic, partition)
);

-- Events a guard did not apply (a transition not allowed from the current state, a stale version), with why.
create table lifeline_ignored_events (
  id        bigserial   primary key,
  consumer  text        not null,
  event_id  text,
  topic     text        not null,
  partition integer     not null,
  "offset"  bigint      not null,
  entity    text,
  entity_id text,
  reason    text        not null,
  detail    jsonb       not null default '{}',
  at        timestamptz not null default now()
);
create index lifeline_ignored_events_consumer on lifeline_ignored_events (consumer, at);
create index lifeline_ignored_events_entity on lifeline_ignored_events (entity, entity_id);

-- A final failure (after the DLQ write): PENDING until an operator resolves or ignores it; the compensations
-- that ran for it and every attempt of each.
create table lifeline_failures (
  id            bigserial   primary key,
  consumer      text        not null,
  event_id      text,
  topic         text        not null,
  partition     integer     not null,
  "offset"      bigint      not null,
  key           bytea,
  error_code    text        not null,
  error_message text        not null,
  status        text        not null default 'PENDING' check (status in ('PENDING', 'RESOLVED', 'IGNORED')),
  compensations jsonb       not null default '[]',
  reason        text,
  resolved_by   text,
  resolved_at   timestamptz,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  unique (consumer, topic, partition, "offset")
);
create index lifeline_failures_status on lifeline_failures (status, created_at);
