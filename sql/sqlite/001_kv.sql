-- Key-value store and the persisted counters.
-- meta holds store-wide counters: 'version' is taken by every write, so a
-- version is never reused (not across delete + re-create, not across restarts).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (name, value) VALUES ('version', 0);

-- Keys are BLOBs so that ordering is byte order. expires_at is absolute
-- Unix time in ms, NULL = never; an expired row behaves as absent and is
-- purged in the background.
CREATE TABLE kv (
    key          BLOB PRIMARY KEY,
    value        BLOB NOT NULL,
    content_type TEXT NOT NULL,
    version      INTEGER NOT NULL,
    expires_at   INTEGER
);
CREATE INDEX kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
