-- Watch: the change log (PostgreSQL form of sql/sqlite/008_watch.sql, same
-- meaning). One row per committed KV change, written in the transaction
-- of the change, keyed by its version. Versions come from the meta row
-- every writer locks from BEGIN to COMMIT, so on one database the rows
-- become visible in version order (see src/storage_pg_watch.c).
CREATE TABLE kv_changes (
    version    BIGINT PRIMARY KEY,
    key        BYTEA NOT NULL,
    kind       TEXT NOT NULL,
    expires_at BIGINT
);
CREATE TABLE kv_changes_trimmed (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO kv_changes_trimmed (id, version) VALUES (1, 0);
