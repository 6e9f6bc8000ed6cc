-- Placeholder for main's 0006 (ordering protocol), which this branch does not carry: the loader refuses a
-- gap between 0005 and 0007_dlq_security.sql. Drop this file at merge (main's 0006 takes its place).
select 1;
