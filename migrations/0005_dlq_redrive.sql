-- DLQ redrive: what a resumable bulk job needs on top of 0004.

-- Job options without a column of their own (canaryWaitMs, whether the canary passed, ...).
alter table lifeline_dlq_jobs add column options jsonb not null default '{}';
-- The processor running the job now (a random id per run): heartbeats and writes check it, so a job
-- resumed elsewhere after a stale heartbeat stops the old runner.
alter table lifeline_dlq_jobs add column runner text;
-- Target topic → partition → offset from which the job's in-flight sends are looked for after a crash
-- (advanced with every acknowledged batch).
alter table lifeline_dlq_jobs add column marks jsonb not null default '{}';

-- An item being sent: its replay id is assigned before the send (status 'sending'), so a resume can tell
-- whether that very replay reached the target.
create index lifeline_dlq_job_items_status on lifeline_dlq_job_items (job_id, status, seq);

-- The edit a replay was made of, and the lineage's replay count it carried (`lifeline.replay.count`).
alter table lifeline_dlq_replays add column edit_id bigint references lifeline_dlq_edits (id);
alter table lifeline_dlq_replays add column replay_count integer;
create index lifeline_dlq_replays_job on lifeline_dlq_replays (job_id) where job_id is not null;
create index lifeline_dlq_edits_record on lifeline_dlq_edits (record_id, id);
-- Records that came back with a replay id (few): how a job counts its replays that failed again.
create index lifeline_dlq_records_replay_id on lifeline_dlq_records (replay_id) where replay_id is not null;
