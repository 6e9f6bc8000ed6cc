-- Bulk redrive at the speed of the broker (issue 14): a job's item list is written once by one
-- INSERT ... SELECT from lifeline_dlq_records and then only its status changes.

-- The items of a job reference its records and its job row by construction (the creating statement
-- selects them in the same transaction, and neither records nor jobs are ever deleted: closing a record
-- is a status). The foreign keys only added a check per item that locked its record row (FOR KEY
-- SHARE): 1.1 s of the 2.3 s a 100,000-item job took to create.
alter table lifeline_dlq_job_items drop constraint lifeline_dlq_job_items_record_id_fkey;
alter table lifeline_dlq_job_items drop constraint lifeline_dlq_job_items_job_id_fkey;

-- An item's status changes twice (sending, then sent) and is read through the primary key (job_id, seq)
-- by a cursor: without an index on the status, those changes are HOT updates (no index entry written),
-- and the free space left on each page lets them stay on their page.
drop index lifeline_dlq_job_items_status;
alter table lifeline_dlq_job_items set (fillfactor = 50);

-- A replay row is written before its send and gets its offset after the acknowledgement: room for that
-- second version on the same page (a HOT update: no column it changes is indexed).
alter table lifeline_dlq_replays set (fillfactor = 70);
