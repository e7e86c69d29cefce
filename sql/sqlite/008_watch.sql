-- Watch (GET /v1/watch, blocking GET): the change log. One row per
-- committed KV change, written in the transaction of the change: its
-- version (the store-wide counter of meta), the key, the kind ('p' put,
-- 'd' delete, 'x' expire: the purge removed the key) and the expiry the
-- key has after it (NULL = never, or deleted). Bounded: the maintenance
-- thread keeps the newest --watch-history rows (src/watch.c);
-- kv_changes_trimmed holds the largest version removed from the log, so a
-- reader asking for changes after a smaller version learns that some are
-- gone (410 history_truncated).
CREATE TABLE kv_changes (
    version    INTEGER PRIMARY KEY,
    key        BLOB NOT NULL,
    kind       TEXT NOT NULL,
    expires_at INTEGER
);
CREATE TABLE kv_changes_trimmed (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO kv_changes_trimmed (id, version) VALUES (1, 0);
