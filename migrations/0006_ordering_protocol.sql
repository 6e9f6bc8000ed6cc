-- The fenced, write-ahead park/release protocol (docs/ordering.md, "The protocol").

-- Fencing: the epoch of each partition a Lifeline consumer owns, bumped by every member that is assigned the
-- partition (source or retry tier). Every runtime write to the ordering state names the partition it acts
-- through and the epoch it took at assignment, and holds a share lock on this row: a member whose
-- assignment was lost (a zombie) finds a newer epoch and its write is refused.
create table lifeline_partition_epochs (
  group_id    text        not null,
  topic       text        not null,
  partition   integer     not null,
  epoch       bigint      not null,
  member      text        not null,
  assigned_at timestamptz not null default now(),
  primary key (group_id, topic, partition)
);

-- A key is now also 'gap': it waits for a missing sequence, and the records that arrived ahead of it are
-- stored in lifeline_parked_records (store, then process) instead of an in-memory reorder buffer.
alter table lifeline_parked_keys drop constraint lifeline_parked_keys_status_check;
alter table lifeline_parked_keys add constraint lifeline_parked_keys_status_check check (status in ('parked', 'released', 'gap'));

-- Write-ahead: the head's outgoing copy (its retry-tier or DLQ record) is stored with the head move, before
-- it is produced ('pending'); once the broker acknowledged it, 'placed'. A pending copy whose writer lost its
-- partition is produced again (same token) by the partition's next owner.
alter table lifeline_parked_keys add column head_state text not null default 'placed' check (head_state in ('pending', 'placed'));
alter table lifeline_parked_keys add column out_topic text;
alter table lifeline_parked_keys add column out_partition integer;
alter table lifeline_parked_keys add column out_key bytea;
alter table lifeline_parked_keys add column out_value bytea;
alter table lifeline_parked_keys add column out_headers jsonb;
alter table lifeline_parked_keys add column out_timestamp bigint;
-- For a DLQ copy: the DLQ partition's high watermark before the copy was produced. A new owner recovering a
-- pending copy reads the partition from there for the copy's token, and produces it only when it is absent.
alter table lifeline_parked_keys add column out_from bigint;
-- The partition (source or retry tier) and epoch the last head move was written through.
alter table lifeline_parked_keys add column writer_topic text;
alter table lifeline_parked_keys add column writer_partition integer;
alter table lifeline_parked_keys add column writer_epoch bigint;
-- For 'gap': the first missing sequence and since when the key waits for it.
alter table lifeline_parked_keys add column gap_from bigint;
alter table lifeline_parked_keys add column gap_since timestamptz;
create index lifeline_parked_keys_pending on lifeline_parked_keys (group_id, writer_topic, writer_partition) where head_state = 'pending';

-- Sequences a gap policy moved past ('skip' or 'dead-letter', or an operator releasing a gap): a record of
-- such a range that arrives later is a late straggler (dead-lettered, LL_SEQUENCE_LATE), not a duplicate.
create table lifeline_sequence_skips (
  group_id  text        not null,
  topic     text        not null,
  key       bytea       not null,
  from_seq  bigint      not null,
  to_seq    bigint      not null,
  policy    text        not null,
  at        timestamptz not null default now(),
  primary key (group_id, topic, key, from_seq)
);

-- Dead letters of records that park no key (a null key, ordering 'none', a late straggler, a retry-tier
-- record with unreadable headers), written ahead like a head's copy when the consumer has a state database:
-- a redelivery of the record finds its row and is not dead-lettered twice; a pending row whose writer lost
-- its partition is completed by the partition's next owner.
create table lifeline_dead_letters (
  group_id      text        not null,
  topic         text        not null,
  partition     integer     not null,
  "offset"      bigint      not null,
  token         text        not null,
  state         text        not null check (state in ('pending', 'placed')),
  out_topic     text        not null,
  out_partition integer     not null,
  out_key       bytea,
  out_value     bytea,
  out_headers   jsonb,
  out_timestamp bigint,
  out_from      bigint,
  epoch         bigint      not null,
  created_at    timestamptz not null default now(),
  primary key (group_id, topic, partition, "offset")
);
create index lifeline_dead_letters_pending on lifeline_dead_letters (group_id, topic, partition) where state = 'pending';
