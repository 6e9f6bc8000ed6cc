-- The DLQ processor: indexed dead letters (any system's format), their lifecycle history, redrive jobs,
-- edits, approvals, API tokens and an append-only audit log.

create table lifeline_dlq_records (
  id              bigserial   primary key,
  topic           text        not null,
  partition       integer     not null,
  "offset"        bigint      not null,
  key             bytea,
  value           bytea,
  headers         jsonb       not null,
  "timestamp"     bigint      not null,
  -- lifeline | spring | spring-retry | connect | streams | karafka | unknown
  format          text        not null,
  origin_topic    text,
  origin_partition integer,
  origin_offset   bigint,
  origin_timestamp bigint,
  consumer_group  text,
  service         text,
  error_class     text,
  error_code      text,
  error_message   text,
  error_stack     text,
  fingerprint     text,
  attempts        integer,
  first_failure_at timestamptz,
  last_failure_at timestamptz,
  -- When the record failed for good: last_failure_at when the format says, else the DLQ record's timestamp
  -- (else the time it was indexed). Time filters and first/last seen use it.
  failed_at       timestamptz not null,
  -- Format-specific context that has no column (Connect task id and stage, Karafka trace id, ...).
  details         jsonb       not null default '{}',
  -- pending | replaying | replayed | resolved | discarded | failed-again
  status          text        not null default 'pending' check (status in ('pending', 'replaying', 'replayed', 'resolved', 'discarded', 'failed-again')),
  status_reason   text,
  status_actor    text,
  status_at       timestamptz not null default now(),
  -- Replays made from this record (the redrive increments it).
  replay_count    integer     not null default 0,
  -- The replay id this record came back with (its earlier life is the record that replay was made from).
  replay_id       text,
  -- `lifeline.replay.count` on arrival: replays of its lineage before this life (loop detection).
  replayed_before integer     not null default 0,
  previous_id     bigint      references lifeline_dlq_records (id),
  masked          boolean     not null default false,
  indexed_at      timestamptz not null default now(),
  unique (topic, partition, "offset")
);
create index lifeline_dlq_records_status on lifeline_dlq_records (status, id);
create index lifeline_dlq_records_fingerprint on lifeline_dlq_records (fingerprint, id);
create index lifeline_dlq_records_origin on lifeline_dlq_records (origin_topic, key, origin_offset);
create index lifeline_dlq_records_failed_at on lifeline_dlq_records (failed_at);
create index lifeline_dlq_records_previous on lifeline_dlq_records (previous_id) where previous_id is not null;

-- Every status change: who, why, when.
create table lifeline_dlq_events (
  id         bigserial   primary key,
  record_id  bigint      not null references lifeline_dlq_records (id),
  from_status text,
  to_status  text        not null,
  actor      text        not null,
  reason     text,
  detail     jsonb       not null default '{}',
  at         timestamptz not null default now()
);
create index lifeline_dlq_events_record on lifeline_dlq_events (record_id, id);

-- Replays: each replay of a record gets a replay id (a header on the replayed record).
create table lifeline_dlq_replays (
  replay_id  text        primary key,
  record_id  bigint      not null references lifeline_dlq_records (id),
  job_id     bigint,
  target_topic text      not null,
  target_partition integer,
  target_offset bigint,
  edited     boolean     not null default false,
  actor      text        not null,
  at         timestamptz not null default now()
);
create index lifeline_dlq_replays_record on lifeline_dlq_replays (record_id);

-- Edited payloads: the original stays in the record; the edit and its diff are kept here.
create table lifeline_dlq_edits (
  id         bigserial   primary key,
  record_id  bigint      not null references lifeline_dlq_records (id),
  value      bytea       not null,
  diff       jsonb       not null,
  actor      text        not null,
  reason     text,
  at         timestamptz not null default now()
);

-- Bulk redrives: resumable jobs over a frozen list of records.
create table lifeline_dlq_jobs (
  id          bigserial   primary key,
  kind        text        not null default 'redrive',
  filter      jsonb       not null,
  target      jsonb       not null,
  rate_per_sec integer,
  canary      integer,
  max_failure_rate double precision,
  force       boolean     not null default false,
  -- awaiting-approval | ready | running | paused | completed | cancelled | failed
  status      text        not null,
  status_reason text,
  total       integer     not null,
  done        integer     not null default 0,
  succeeded   integer     not null default 0,
  failed      integer     not null default 0,
  skipped     integer     not null default 0,
  requested_by text       not null,
  approved_by text,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  heartbeat_at timestamptz
);
create table lifeline_dlq_job_items (
  job_id     bigint      not null references lifeline_dlq_jobs (id),
  seq        integer     not null,
  record_id  bigint      not null references lifeline_dlq_records (id),
  -- pending | sent | skipped | failed
  status     text        not null default 'pending',
  replay_id  text,
  detail     text,
  primary key (job_id, seq)
);
create index lifeline_dlq_job_items_record on lifeline_dlq_job_items (record_id);

-- Actions waiting for a second person.
create table lifeline_dlq_approvals (
  id           bigserial   primary key,
  action       text        not null,
  payload      jsonb       not null,
  requested_by text        not null,
  status       text        not null default 'pending' check (status in ('pending', 'approved', 'rejected', 'executed')),
  decided_by   text,
  decided_at   timestamptz,
  reason       text,
  created_at   timestamptz not null default now()
);

-- API tokens: only a hash is stored.
create table lifeline_dlq_tokens (
  id         bigserial   primary key,
  name       text        not null unique,
  token_hash text        not null unique,
  role       text        not null check (role in ('viewer', 'operator', 'approver', 'admin')),
  created_at timestamptz not null default now(),
  revoked_at timestamptz
);

-- The audit log: append-only (the database refuses updates and deletes).
create table lifeline_dlq_audit (
  id        bigserial   primary key,
  actor     text        not null,
  role      text,
  action    text        not null,
  target    text,
  detail    jsonb       not null default '{}',
  at        timestamptz not null default now()
);
create function lifeline_dlq_audit_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'lifeline_dlq_audit is append-only: % refused', tg_op;
end
$$;
create trigger lifeline_dlq_audit_no_update before update or delete on lifeline_dlq_audit
  for each row execute function lifeline_dlq_audit_append_only();
create trigger lifeline_dlq_audit_no_truncate before truncate on lifeline_dlq_audit
  for each statement execute function lifeline_dlq_audit_append_only();
