-- Leases (distributed locks) with fencing tokens.
-- One row per held lease. A row whose expires_at <= now is a free lease for
-- every call (lazy expiry); the background sweep deletes such rows, or hands
-- the lease straight to the first waiter. count is the number of re-entrant
-- acquisitions by the owner not yet released (a row with count 0 never
-- exists: the last release deletes the row or hands it over).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    token      INTEGER NOT NULL,
    count      INTEGER NOT NULL CHECK (count >= 1),
    expires_at INTEGER NOT NULL
);
CREATE INDEX leases_expires_at ON leases (expires_at);

-- The store-wide fencing token counter: taken each time a lease passes to a
-- new holder, so tokens strictly increase across names and restarts.
INSERT INTO meta (name, value) VALUES ('fencing_token', 0);
