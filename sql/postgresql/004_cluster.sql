-- Cluster membership (docs/architecture.md, "The cluster"): every daemon
-- on this database and schema is a node, with one row here while it is a
-- member.
--
-- id is taken from the counter 'node_id' once per process; epoch from
-- 'node_epoch' at every (re)registration, so it only grows cluster-wide: a
-- node that lost its membership and came back is told apart from the
-- incarnation others were waiting for. heartbeat_at is the database's
-- clock (sqlcached_now_ms) at the node's last renewal; the node is up
-- while heartbeat_at + lease_ms > sqlcached_now_ms(), judged by the
-- database's clock alone, never by another node's.
--
-- A registration locks the meta rows first, as every write transaction
-- does right after BEGIN: so a write transaction that reads this table
-- before its COMMIT sees every node whose registration committed before
-- it, and waits for each one's acknowledgement of its invalidations.
CREATE TABLE cluster_nodes (
    id           BIGINT PRIMARY KEY,
    epoch        BIGINT NOT NULL,
    address      TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    lease_ms     BIGINT NOT NULL CHECK (lease_ms > 0)
);
INSERT INTO meta (name, value) VALUES ('node_id', 0), ('node_epoch', 0);

-- The database's clock in Unix epoch ms (the one clock membership uses).
CREATE FUNCTION sqlcached_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS
$$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;

-- The LISTEN/NOTIFY channel of this cluster. Channels are per database,
-- not per schema: the name is made from both, so clusters kept in two
-- schemas of one database never hear each other.
CREATE FUNCTION sqlcached_channel() RETURNS TEXT LANGUAGE sql STABLE AS
$$ SELECT 'sqlcached_' || substr(md5(current_database() || '/' || current_schema()), 1, 16) $$;

-- LISTEN takes a name, not a parameter: this runs it for the channel above,
-- so the client only ever sends a prepared statement.
CREATE FUNCTION sqlcached_listen() RETURNS TEXT LANGUAGE plpgsql AS
$$
DECLARE
    ch TEXT := sqlcached_channel();
BEGIN
    EXECUTE format('LISTEN %I', ch);
    RETURN ch;
END
$$;
