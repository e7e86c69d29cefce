-- Flash sale: payment deadlines.
--
-- items.payment_timeout_ms: NULL (or 0) = orders are final when placed (as
-- before); N = a new order is 'pending' until paid, and cancelled at pay_by
-- = created_at + N if still pending then (its unit goes back to stock).
--
-- orders.state: 'pending' (pay_by set), 'paid' (final; every order placed
-- before this migration) or 'cancelled' (no longer counted in sold).
-- settled_at: when it was paid or cancelled (NULL while pending, and for
-- orders final when placed). Invariants (with items): sold = the number of
-- the item's pending and paid orders; a paid order never changes again.
--
-- "One order per user" becomes "at most one pending-or-paid order per user
-- and item": a cancelled order stays as history and does not block a new
-- one. SQLite cannot drop a table's UNIQUE constraint, so the table is
-- rebuilt with a partial unique index instead; order ids are kept, and the
-- AUTOINCREMENT high-water mark is carried over so no id is ever reused.
ALTER TABLE items ADD COLUMN payment_timeout_ms INTEGER;

CREATE TABLE orders_new (
    order_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id    TEXT NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    state      TEXT NOT NULL DEFAULT 'paid'
               CHECK (state IN ('pending', 'paid', 'cancelled')),
    pay_by     INTEGER,
    settled_at INTEGER,
    CHECK (state <> 'pending' OR pay_by IS NOT NULL)
);
INSERT INTO orders_new (order_id, item_id, user_id, created_at, state)
    SELECT order_id, item_id, user_id, created_at, 'paid' FROM orders;
DELETE FROM sqlite_sequence WHERE name = 'orders_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'orders_new', seq FROM sqlite_sequence WHERE name = 'orders';
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;

-- The guard no race can pass: one live (pending or paid) order per user.
CREATE UNIQUE INDEX orders_live_user ON orders (item_id, user_id)
    WHERE state <> 'cancelled';
-- A user's orders of an item, newest first (the live one is the newest).
CREATE INDEX orders_user ON orders (item_id, user_id, order_id);
-- Listing an item's orders in order_id order.
CREATE INDEX orders_item_order ON orders (item_id, order_id);
-- The deadline timer: pending orders by pay_by.
CREATE INDEX orders_pending_pay_by ON orders (pay_by) WHERE state = 'pending';
