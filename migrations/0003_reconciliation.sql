-- Reconciliation runs and their findings (src/effects/reconcile.ts, docs/reconciliation.md). A run compares
-- a source of truth with a target derived from it in batches, reporting rows missing from the target,
-- extra in it, or different, and optionally repairing them.

-- One row per run. While it runs, `phase` + `resume_cursor` name the next batch to read (a null cursor: the
-- start of the phase) and advance in the same transaction as the findings of each finished batch, so an
-- interrupted run resumes without checking a finished batch again.
create table lifeline_reconcile_runs (
  id            bigserial   primary key,
  name          text        not null,
  -- running: in progress, or its process died (heartbeat_at stops moving); failed / aborted: resumable
  -- while it is the name's latest run; completed: both passes finished.
  status        text        not null check (status in ('running', 'completed', 'failed', 'aborted')),
  repair        boolean     not null,
  -- source: reading the source (missing, different); target: reading the target (extra).
  phase         text        not null default 'source' check (phase in ('source', 'target')),
  resume_cursor text,
  batch_size    integer     not null,
  batches       bigint      not null default 0,
  checked       bigint      not null default 0,
  missing       bigint      not null default 0,
  extra         bigint      not null default 0,
  different     bigint      not null default 0,
  repaired      bigint      not null default 0,
  repair_failed bigint      not null default 0,
  -- 1, plus one per resume.
  attempts      integer     not null default 1,
  error_code    text,
  error         text,
  started_at    timestamptz not null default now(),
  heartbeat_at  timestamptz not null default now(),
  finished_at   timestamptz
);
create index lifeline_reconcile_runs_name on lifeline_reconcile_runs (name, id);

-- What a run found: one row per (run, kind, key), whatever the number of times a reader returned the key.
create table lifeline_reconcile_findings (
  id           bigserial   primary key,
  run_id       bigint      not null references lifeline_reconcile_runs (id) on delete cascade,
  kind         text        not null check (kind in ('missing', 'extra', 'different')),
  key          text        not null,
  -- The values as read (JSON); null on the side the row is absent from.
  source       jsonb,
  target       jsonb,
  -- What compare() returned for a `different` row.
  diff         jsonb,
  repaired     boolean     not null default false,
  -- The last failed repair attempt (null once repaired).
  repair_error text,
  found_at     timestamptz not null default now(),
  repaired_at  timestamptz,
  unique (run_id, kind, key)
);
create index lifeline_reconcile_findings_run on lifeline_reconcile_findings (run_id, id);
