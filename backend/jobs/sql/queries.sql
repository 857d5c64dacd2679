-- claim_jobs --
-- Lease up to $2 runnable jobs of kinds $4 (NULL: any) to worker $1 for $3 seconds,
-- oldest first within priority.
WITH picked AS (
    SELECT id FROM jobs
    WHERE state = 'queued' AND run_after <= now() AND ($4::text[] IS NULL OR kind = ANY($4::text[]))
    ORDER BY priority DESC, run_after, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET
    state = 'running',
    attempts = attempts + 1,
    lease_owner = $1,
    lease_expires_at = now() + make_interval(secs => $3),
    started_at = coalesce(started_at, now()),
    updated_at = now()
FROM picked WHERE jobs.id = picked.id
RETURNING jobs.id, jobs.kind, jobs.device_id, jobs.payload, jobs.attempts, jobs.max_attempts;

-- heartbeat --
-- Extend the leases of worker $2's jobs $1 by $3 seconds; returns those still held, with their cancel flags.
UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
WHERE id = ANY($1::bigint[]) AND lease_owner = $2 AND state = 'running'
RETURNING id, cancel_requested;

-- set_progress --
-- Record progress of job $1 held by worker $4; returns the cancel flag, no row once the lease is lost.
UPDATE jobs SET progress = $2, progress_message = $3, updated_at = now()
WHERE id = $1 AND lease_owner = $4 AND state = 'running'
RETURNING cancel_requested;

-- finish_job --
-- Move running job $1 held by $2 to a terminal state $3 with error $4.
UPDATE jobs SET state = $3::varchar, error = $4::text, lease_owner = NULL, lease_expires_at = NULL,
    progress = CASE WHEN $3::varchar = 'succeeded' THEN 1 ELSE progress END,
    finished_at = now(), updated_at = now()
WHERE id = $1 AND lease_owner = $2;

-- finish_succeeded --
-- Mark worker $2's jobs $1 succeeded in one statement (finishes are batched).
UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, progress = 1,
    progress_message = 'done', finished_at = now(), updated_at = now()
WHERE id = ANY($1::bigint[]) AND lease_owner = $2;

-- retry_job --
-- Put running job $1 held by $2 back in the queue after $3 seconds, keeping error $4.
UPDATE jobs SET state = 'queued', error = $4::text, lease_owner = NULL, lease_expires_at = NULL,
    run_after = now() + make_interval(secs => $3), updated_at = now()
WHERE id = $1 AND lease_owner = $2;

-- requeue_expired --
-- Requeue running jobs whose lease ran out (their worker died); returns their ids.
UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
    error = coalesce(error || E'\n', '') || 'worker lost its lease; requeued', updated_at = now()
WHERE state = 'running' AND lease_expires_at < now()
RETURNING id;

-- next_run_after --
-- Seconds until the earliest queued job becomes runnable, negative when overdue, NULL
-- when none is queued (not greatest(0, ...): greatest() skips NULLs, which made 0).
SELECT extract(epoch FROM min(run_after) - now())::float8 FROM jobs WHERE state = 'queued';

-- release_jobs --
-- Hand worker $2's jobs $1 back to the queue at once (shutdown), undoing the attempt.
UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), lease_owner = NULL,
    lease_expires_at = NULL, updated_at = now()
WHERE id = ANY($1::bigint[]) AND lease_owner = $2 AND state = 'running'
RETURNING id;

-- release_owned --
-- Hand every job worker $1 still leases back to the queue (last step of a shutdown), undoing the attempt.
UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), lease_owner = NULL,
    lease_expires_at = NULL, updated_at = now()
WHERE lease_owner = $1 AND state = 'running'
RETURNING id;
