-- DLQ processor filters that scanned the whole table (issue 14, bench/README.md `dlq-queries`): a consumer
-- group, an error code or a record key that matches few records read every record before. Hash indexes:
-- the filters are equalities, and a hash index holds any value (a B-tree entry must fit in a third of a
-- page, and these values come from other systems' headers and keys, of any length).
create index lifeline_dlq_records_group on lifeline_dlq_records using hash (consumer_group);
create index lifeline_dlq_records_error_code on lifeline_dlq_records using hash (error_code);
create index lifeline_dlq_records_key on lifeline_dlq_records using hash (key);
