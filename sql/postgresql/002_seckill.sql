-- Flash sale: items with stock, and at most one order per user and item
-- (PostgreSQL form of sql/002_seckill.sql).
--
-- stock + sold = initial_stock always holds (initial_stock is the stock the
-- item was last reset to); every statement that changes stock changes sold
-- by the opposite amount. version takes the store-wide 'version' counter
-- (meta) on every change of the row, like a KV write. Across nodes the
-- conditional UPDATE ... WHERE stock > 0 (or AND version = $n) takes the
-- item's row lock, so no unit is sold twice.
CREATE TABLE items (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT NOT NULL,
    stock         BIGINT NOT NULL CHECK (stock >= 0),
    sold          BIGINT NOT NULL CHECK (sold >= 0),
    initial_stock BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    CHECK (stock + sold = initial_stock)
);

-- UNIQUE (item_id, user_id) is the one-order-per-user guard that no race
-- can pass, on one node or many (a second insert waits for the first
-- transaction, then fails with 23505 unique_violation).
--
-- order_id comes from the counter row 'order_id' of meta, taken by the
-- writer inside its transaction (as SQLite's AUTOINCREMENT: never reused,
-- not even after a reset deleted the orders holding the highest ids), not
-- from a SEQUENCE: order ids then grow in commit order, so a client paging
-- through an item's orders by order_id never misses an order that commits
-- after its page with a smaller id.
CREATE TABLE orders (
    order_id   BIGINT PRIMARY KEY,
    item_id    TEXT COLLATE "C" NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    user_id    TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (item_id, user_id)
);
-- Listing an item's orders in order_id order.
CREATE INDEX orders_item_order ON orders (item_id, order_id);

INSERT INTO meta (name, value) VALUES ('order_id', 0);
