-- Flash sale: items with stock, and at most one order per user and item.
--
-- stock + sold = initial_stock always holds (initial_stock is the stock the
-- item was last reset to); every statement that changes stock changes sold
-- by the opposite amount. version takes the store-wide 'version' counter
-- (meta) on every change of the row, like a KV write.
CREATE TABLE items (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    stock         INTEGER NOT NULL CHECK (stock >= 0),
    sold          INTEGER NOT NULL CHECK (sold >= 0),
    initial_stock INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    CHECK (stock + sold = initial_stock)
);

-- UNIQUE (item_id, user_id) is the one-order-per-user guard that no race can
-- pass. AUTOINCREMENT: an order id is never reused, not even after a reset
-- deleted the orders holding the highest ids.
CREATE TABLE orders (
    order_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id    TEXT NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (item_id, user_id)
);
-- Listing an item's orders in order_id order.
CREATE INDEX orders_item_order ON orders (item_id, order_id);
