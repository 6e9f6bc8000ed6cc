-- One dead letter per failure, however many copies reach the DLQ topic (rehearsal finding F3).
--
-- A member cut off from the brokers (a network partition, a pause past the session timeout) can still have
-- a dead-letter write queued in its producer: the write lands when the link comes back, after the member
-- that took over the partition ran the head again and dead-lettered it too. Without a transactional
-- producer fenced per partition nothing in Kafka stops that late write, so the DLQ processor folds it: a
-- Lifeline dead letter is one failure of one source record in one consumer group and one life (the first,
-- or the redrive it came back from), and a second record with the same identity is stored as a copy of the
-- first (lifeline_dlq_copies), not as a second dead letter an operator would replay or discard twice.

-- Dead letters indexed before this migration may hold such copies already: the later ones are marked
-- (copy_of = the first's id) and left as they are (an operator may have acted on them).
alter table lifeline_dlq_records add column copy_of bigint;
update lifeline_dlq_records r set copy_of = f.first_id
  from (select id, min(id) over (partition by consumer_group, origin_topic, origin_partition, origin_offset, coalesce(replay_id, '')) as first_id
          from lifeline_dlq_records
         where format = 'lifeline' and consumer_group is not null and origin_topic is not null and origin_partition is not null and origin_offset is not null) f
 where r.id = f.id and f.first_id <> f.id;

-- The identity of a Lifeline dead letter; the indexer's insert does nothing on a conflict here either.
create unique index lifeline_dlq_records_identity on lifeline_dlq_records (consumer_group, origin_topic, origin_partition, origin_offset, coalesce(replay_id, ''))
  where format = 'lifeline' and copy_of is null and consumer_group is not null and origin_topic is not null and origin_partition is not null and origin_offset is not null;

-- Each further copy read from a DLQ topic: where it is, and the dead letter it is a copy of. Keyed by its
-- place, so reading it again (after a restart) records nothing twice.
create table lifeline_dlq_copies (
  topic      text        not null,
  partition  integer     not null,
  "offset"   bigint      not null,
  record_id  bigint      not null references lifeline_dlq_records (id),
  indexed_at timestamptz not null default now(),
  primary key (topic, partition, "offset")
);
create index lifeline_dlq_copies_record on lifeline_dlq_copies (record_id);
