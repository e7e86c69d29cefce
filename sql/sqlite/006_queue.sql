-- Delay queue: durable jobs that become due at a time, claimed by workers
-- with a visibility timeout.
-- One row per job not yet acked or cancelled. run_at is when the job is due
-- next: its delay's end, a nack's delay's end, or the end of its current
-- claim (a claim not acked by then makes it due again). worker is set while
-- the job is claimed (NULL otherwise): the job is claimed while worker IS
-- NOT NULL AND run_at > now, delayed while worker IS NULL AND run_at > now,
-- ready otherwise. claim_token is the token of the job's last claim (0 =
-- never claimed). seq orders jobs due at the same time by enqueue.
CREATE TABLE jobs (
    seq         INTEGER PRIMARY KEY,
    queue       TEXT NOT NULL,
    id          TEXT NOT NULL,
    payload     TEXT NOT NULL,
    run_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    claim_token INTEGER NOT NULL DEFAULT 0,
    worker      TEXT,
    UNIQUE (queue, id)
);
CREATE INDEX jobs_due ON jobs (queue, run_at, seq);

-- The store-wide claim token counter: taken for each claim, so tokens
-- strictly increase across queues and restarts.
INSERT INTO meta (name, value) VALUES ('claim_token', 0);
