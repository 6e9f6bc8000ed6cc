-- DLQ processor security (issue 13): token owners, expiry and last use; approvals bound to their
-- requester's owner and token, with an expiry.

-- Tokens: who holds them (a person or a service identity: four-eyes compares owners), an optional expiry,
-- and when they were last used (written at most once a minute per token). Tokens made before this
-- migration are their own owner.
alter table lifeline_dlq_tokens add column owner text;
update lifeline_dlq_tokens set owner = name;
alter table lifeline_dlq_tokens alter column owner set not null;
alter table lifeline_dlq_tokens add column expires_at timestamptz;
alter table lifeline_dlq_tokens add column last_used_at timestamptz;

-- Approvals: the requester's owner (a second person means a second owner) and token (an approval is void
-- once that token is revoked), and when it expires. Pending approvals made before this migration expire
-- 24 hours after they were made.
alter table lifeline_dlq_approvals add column requested_owner text;
alter table lifeline_dlq_approvals add column requested_token bigint references lifeline_dlq_tokens (id);
alter table lifeline_dlq_approvals add column expires_at timestamptz;
update lifeline_dlq_approvals a set requested_owner = t.owner, requested_token = t.id from lifeline_dlq_tokens t where t.name = a.requested_by;
update lifeline_dlq_approvals set requested_owner = requested_by where requested_owner is null;
update lifeline_dlq_approvals set expires_at = created_at + interval '24 hours';
alter table lifeline_dlq_approvals alter column requested_owner set not null;
alter table lifeline_dlq_approvals alter column expires_at set not null;
alter table lifeline_dlq_approvals drop constraint lifeline_dlq_approvals_status_check;
alter table lifeline_dlq_approvals add constraint lifeline_dlq_approvals_status_check
  check (status in ('pending', 'approved', 'rejected', 'executed', 'expired', 'void'));
create index lifeline_dlq_approvals_pending on lifeline_dlq_approvals (expires_at) where status = 'pending';

-- Redrive jobs: the requester's owner (the bulk threshold counts an owner's unapproved redrives over a window).
alter table lifeline_dlq_jobs add column requested_owner text;
create index lifeline_dlq_jobs_owner on lifeline_dlq_jobs (requested_owner, created_at) where requested_owner is not null;

-- The audit log's hash chain: each row's hash covers the previous row's hash and its own content
-- (src/dlq/audit.ts), so `lifeline dlq audit verify` finds a row changed, removed or inserted behind the
-- append-only trigger. Rows written before this migration have none (reported as unchained).
alter table lifeline_dlq_audit add column prev_hash text;
alter table lifeline_dlq_audit add column hash text;
