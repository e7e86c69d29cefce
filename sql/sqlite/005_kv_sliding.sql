-- Sliding expiry (PUT /v1/kv/{key}?ttl=S&sliding=true): sliding_ms is S in
-- ms, 0 = the expiry does not slide. A write of a sliding key sets
-- expires_at = now + sliding_ms; a read extends expires_at (never
-- shortens it) through the writer, coalesced (src/kv.c). A write without
-- sliding sets it back to 0.
ALTER TABLE kv ADD COLUMN sliding_ms INTEGER NOT NULL DEFAULT 0;
