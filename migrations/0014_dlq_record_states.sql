-- A dead letter's status in a narrow table of its own (lifeline_dlq_record_states), apart from the record
-- it describes (lifeline_dlq_record_bodies, the table lifeline_dlq_records was). lifeline_dlq_records is
-- now a view joining the two, with the same columns as before plus scope_topic: every read is unchanged.
--
-- A status change writes a new row version, and because the status is indexed, PostgreSQL cannot make it
-- a heap-only update: each version gets an entry in every index of its table. In the one wide table that
-- was a ~1.6 kB row and a dozen index entries per change, and a redrive changes each record's status twice
-- (replaying, then replayed): those two statements were most of a bulk redrive's database time
-- (bench/README.md, "redrive"). A row here is ~60 bytes with three index entries; the same change costs
-- about a fifth of what it did. The record itself is written once, when it is indexed.
--
-- Writers name the table they write: the indexer inserts into both; status changes (and replay_count)
-- update lifeline_dlq_record_states; the failed-again link (previous_id) updates the bodies.
alter table lifeline_dlq_records rename to lifeline_dlq_record_bodies;

create table lifeline_dlq_record_states (
  id            bigint      primary key references lifeline_dlq_record_bodies (id),
  -- coalesce(origin_topic, topic) of the record, never changed: the console's topic filter (the index
  -- lifeline_dlq_record_states_scope below; it was lifeline_dlq_records_topic_status, migration 0009).
  scope_topic   text        not null,
  -- pending | replaying | replayed | resolved | discarded | failed-again
  status        text        not null default 'pending' check (status in ('pending', 'replaying', 'replayed', 'resolved', 'discarded', 'failed-again')),
  status_reason text,
  status_actor  text,
  status_at     timestamptz not null default now(),
  -- Replays made from this record (the redrive increments it).
  replay_count  integer     not null default 0
);

insert into lifeline_dlq_record_states (id, scope_topic, status, status_reason, status_actor, status_at, replay_count)
  select id, coalesce(origin_topic, topic), status, status_reason, status_actor, status_at, replay_count from lifeline_dlq_record_bodies;

create index lifeline_dlq_record_states_status on lifeline_dlq_record_states (status, id);
create index lifeline_dlq_record_states_scope on lifeline_dlq_record_states (scope_topic, status, id);

-- Dropping the columns drops their indexes (lifeline_dlq_records_status, lifeline_dlq_records_topic_status).
alter table lifeline_dlq_record_bodies
  drop column status,
  drop column status_reason,
  drop column status_actor,
  drop column status_at,
  drop column replay_count;

create view lifeline_dlq_records as
  select b.id, b.topic, b.partition, b."offset", b.key, b.value, b.headers, b."timestamp", b.format,
         b.origin_topic, b.origin_partition, b.origin_offset, b.origin_timestamp, b.consumer_group, b.service,
         b.error_class, b.error_code, b.error_message, b.error_stack, b.fingerprint, b.attempts,
         b.first_failure_at, b.last_failure_at, b.failed_at, b.details,
         s.status, s.status_reason, s.status_actor, s.status_at, s.replay_count,
         b.replay_id, b.replayed_before, b.previous_id, b.masked, b.indexed_at, b.copy_of, s.scope_topic
    from lifeline_dlq_record_bodies b
    join lifeline_dlq_record_states s on s.id = b.id;

-- A job's replays that came back to a DLQ, counted by the indexer when it links such a record to its
-- earlier life (in the transaction that stores it). The runner's failure-rate check reads it instead of
-- joining the records that came back to the job's replays, a query whose plan depended on fresh statistics
-- (a scan of the records table, 25-70 ms a check at 100,000 records, during a job that grows both tables).
alter table lifeline_dlq_jobs add column came_back bigint not null default 0;
update lifeline_dlq_jobs j set came_back = c.n
  from (select p.job_id, count(*) as n from lifeline_dlq_record_bodies b join lifeline_dlq_replays p on p.replay_id = b.replay_id
         where b.replay_id is not null and p.job_id is not null group by p.job_id) c
 where j.id = c.job_id;

-- A job's items and its replays are each written twice per record (items: sending, then sent; replays:
-- inserted before the send, their target offset set after it). Neither update touches an indexed column,
-- so both can be heap-only updates (no new index entries) when the page has room for the new version:
-- these fillfactors leave that room (pages written from now on).
alter table lifeline_dlq_job_items set (fillfactor = 50);
alter table lifeline_dlq_replays set (fillfactor = 60);
