-- The equality filters' indexes (consumer group, error code, error class, key) as B-trees over md5 of the
-- value, instead of hash indexes (migrations 0008 and 0009).
--
-- A hash index cannot split a bucket whose entries all have one value: every entry of that value sits in
-- one overflow chain, and an insert walks the chain to its end. A DLQ holds exactly that — an incident's
-- 100,000 dead letters share one consumer group, one error code, one error class — so every insert and every
-- status change (a new row version: the status is indexed) cost one page per ~400 records of its value in
-- each of these indexes: 1.6 million buffer reads to mark 2,000 records `replaying` at 100,000 records,
-- 340 ms instead of ~40 (bench/README.md, "redrive"). A B-tree finds its place in log time. md5 keeps
-- its entries small whatever the value's length (a B-tree entry must fit in a third of a page, and these
-- values come from other systems' headers and keys); the filters compare md5 first, then the value.
drop index if exists lifeline_dlq_records_group;
drop index if exists lifeline_dlq_records_error_code;
drop index if exists lifeline_dlq_records_error_class;
drop index if exists lifeline_dlq_records_key;
create index lifeline_dlq_records_group on lifeline_dlq_records (md5(consumer_group), id);
create index lifeline_dlq_records_error_code on lifeline_dlq_records (md5(error_code), id);
create index lifeline_dlq_records_error_class on lifeline_dlq_records (md5(error_class), id);
create index lifeline_dlq_records_key on lifeline_dlq_records (md5(key), id);
