-- How many times a redrive job has been paused (by an operator or by its runner: a canary, an error
-- budget). The DLQ processor's watcher announces each pause once: it keys a pause by (job, pauses), since
-- `updated_at` also moves while a job stays paused (the batch in flight at the pause records its progress).
alter table lifeline_dlq_jobs add column pauses integer not null default 0;
