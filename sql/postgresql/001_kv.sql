-- Key-value store and the persisted counters (PostgreSQL form of
-- sql/001_kv.sql: same tables, same meaning).
--
-- Text columns that are compared or ordered use COLLATE "C": byte order,
-- as SQLite compares TEXT, whatever the database's locale. BYTEA compares
-- bytes too (memcmp, then the shorter first), as SQLite compares BLOBs.
--
-- meta holds store-wide counters. 'version' is taken by every write, so a
-- version is never reused (not across delete + re-create, not across
-- restarts). It is a counter row, not a SEQUENCE, on purpose: nextval() is
-- not transactional, so of two transactions the one that took the smaller
-- value may commit second, and a reader (or the change feed) would see
-- version 6 before version 5 appears. The writer takes the row with
-- UPDATE meta ... RETURNING (or SELECT ... FOR UPDATE) inside its group
-- commit transaction; the row lock is held to COMMIT, so any other
-- transaction that takes a version waits for that commit and gets a larger
-- value: versions grow in commit order, for every key and store-wide.
-- With one writer per node this costs nothing. The cluster (many nodes on
-- one database) must keep that rule: every node's writer takes the row,
-- which serializes the group transactions of all nodes (group commit
-- amortizes it; take the row as late in the transaction as possible), and
-- no node may count ahead in memory from a value it read in an earlier
-- transaction (the SQLite writer's cache of counters is single-writer only).
CREATE TABLE meta (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('version', 0);

-- expires_at is absolute Unix time in ms, NULL = never; an expired row
-- behaves as absent and is purged in the background (a purge deletes by
-- key: PostgreSQL has no rowid). The cluster will need one clock for expiry
-- decisions across nodes (the database's, or a bound on skew).
CREATE TABLE kv (
    key          BYTEA PRIMARY KEY,
    value        BYTEA NOT NULL,
    content_type TEXT NOT NULL,
    version      BIGINT NOT NULL,
    expires_at   BIGINT
);
CREATE INDEX kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
