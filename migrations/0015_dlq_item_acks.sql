-- Where a job's replay landed is kept on its item (issue 14). A job's replay row is still written before
-- its send (the indexer links a replay that comes back through it, even one that comes back before the
-- send resolves), but its target partition and offset are no longer updated after the acknowledgement:
-- the item's `sent` update, which happens anyway, carries them. One row write per record less; the item's
-- update stays heap-only (neither column is indexed). Replay rows written before this migration keep their
-- offsets. Recovery needs neither: an item is marked `sent` in the transaction that records its offset, so
-- an item left `sending` has no recorded offset anywhere and is looked for in the target topic.
alter table lifeline_dlq_job_items add column target_partition integer;
alter table lifeline_dlq_job_items add column target_offset bigint;
