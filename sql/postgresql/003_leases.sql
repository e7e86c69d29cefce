-- Leases (distributed locks) with fencing tokens (PostgreSQL form of
-- sql/003_leases.sql).
--
-- One row per held lease. A row whose expires_at <= now is a free lease for
-- every call (lazy expiry); the background sweep deletes such rows, or hands
-- the lease straight to the first waiter. count is the number of re-entrant
-- acquisitions by the owner not yet released (a row with count 0 never
-- exists: the last release deletes the row or hands it over).
--
-- Across nodes (the cluster issue): the row lock of the conditional
-- UPDATE/DELETE ... WHERE owner = $2 AND expires_at > $3 makes a lease
-- held by at most one owner; expiry compares times from the nodes' clocks,
-- so the cluster needs one clock (the database's, or a bound on skew); a
-- waiter parked on another node must be woken (LISTEN/NOTIFY or polling).
CREATE TABLE leases (
    name       TEXT COLLATE "C" PRIMARY KEY,
    owner      TEXT COLLATE "C" NOT NULL,
    token      BIGINT NOT NULL,
    count      INTEGER NOT NULL CHECK (count >= 1),
    expires_at BIGINT NOT NULL
);
CREATE INDEX leases_expires_at ON leases (expires_at);

-- The store-wide fencing token counter: taken each time a lease passes to a
-- new holder, so tokens strictly increase across names, restarts and (as a
-- counter row locked to COMMIT, see 001_kv.sql) in commit order.
INSERT INTO meta (name, value) VALUES ('fencing_token', 0);
