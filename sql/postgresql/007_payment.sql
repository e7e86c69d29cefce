-- Flash sale: payment deadlines (PostgreSQL form of
-- sql/sqlite/007_payment.sql; see there for the columns and invariants).
--
-- "One order per user" becomes "at most one pending-or-paid order per user
-- and item": the UNIQUE (item_id, user_id) constraint gives way to a partial
-- unique index over the orders that are not cancelled (a second insert
-- still waits for the first transaction, then fails with 23505, on one
-- node or many). A cancellation is a conditional UPDATE ... WHERE state =
-- 'pending': its row lock and the re-check of that condition after a wait
-- let exactly one of two racing writers (a pay and the deadline, or the
-- deadline timers of two nodes) change the order.
ALTER TABLE items ADD COLUMN payment_timeout_ms BIGINT;

ALTER TABLE orders
    ADD COLUMN state TEXT COLLATE "C" NOT NULL DEFAULT 'paid'
        CHECK (state IN ('pending', 'paid', 'cancelled')),
    ADD COLUMN pay_by BIGINT,
    ADD COLUMN settled_at BIGINT,
    ADD CHECK (state <> 'pending' OR pay_by IS NOT NULL);
ALTER TABLE orders DROP CONSTRAINT orders_item_id_user_id_key;

CREATE UNIQUE INDEX orders_live_user ON orders (item_id, user_id)
    WHERE state <> 'cancelled';
CREATE INDEX orders_user ON orders (item_id, user_id, order_id);
CREATE INDEX orders_pending_pay_by ON orders (pay_by) WHERE state = 'pending';
