-- The operator console's record filters at a million dead letters (issue 15, bench/README.md `console`):
-- each filter the console offers, alone or with a status and newest first, reads an index, never the table.
--
-- The topic filter is `coalesce(origin_topic, topic) = $1` (a record's origin topic, else its DLQ topic):
-- by that expression, status and id, a topic's records of a status come newest first straight from the
-- index (a backward scan of the primary key read the whole table for a topic with no record of the status
-- asked for: 0.9 s at a million records).
create index lifeline_dlq_records_topic_status on lifeline_dlq_records ((coalesce(origin_topic, topic)), status, id);
-- Equality filters on values of any length (a B-tree entry must fit a third of a page; a hash index holds
-- any value). The error code and key indexes are those the DLQ query-scale work (issue 14) adds under the
-- same names and definitions: whichever migration runs first creates them.
create index if not exists lifeline_dlq_records_error_code on lifeline_dlq_records using hash (error_code);
create index if not exists lifeline_dlq_records_key on lifeline_dlq_records using hash (key);
create index lifeline_dlq_records_error_class on lifeline_dlq_records using hash (error_class);
