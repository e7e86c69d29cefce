-- Delay queue (PostgreSQL form of sql/sqlite/006_queue.sql).
--
-- One row per job not yet acked or cancelled. run_at is when the job is due
-- next: its delay's end, a nack's delay's end, or the end of its current
-- claim (a claim not acked by then makes it due again). worker is set while
-- the job is claimed (NULL otherwise): the job is claimed while worker IS
-- NOT NULL AND run_at > now, delayed while worker IS NULL AND run_at > now,
-- ready otherwise. claim_token is the token of the job's last claim (0 =
-- never claimed). seq orders jobs due at the same time by enqueue.
--
-- Across nodes: a claim locks the due rows it picks (FOR UPDATE SKIP
-- LOCKED) and changes each with a conditional UPDATE (still due, still
-- under the token it was read with), so one job is never handed to two
-- claimers, whichever nodes they are on.
CREATE TABLE jobs (
    seq         BIGSERIAL PRIMARY KEY,
    queue       TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    payload     TEXT NOT NULL,
    run_at      BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    claim_token BIGINT NOT NULL DEFAULT 0,
    worker      TEXT COLLATE "C",
    UNIQUE (queue, id)
);
CREATE INDEX jobs_due ON jobs (queue, run_at, seq);

-- The store-wide claim token counter: taken for each claim, so tokens
-- strictly increase across queues, restarts and (as a counter row locked
-- to COMMIT, see 001_kv.sql) in commit order across nodes.
INSERT INTO meta (name, value) VALUES ('claim_token', 0);
