-- The array form of the consumer's insert (event_consumer/src/db/store.rs, `insert`), which it
-- uses for batches of two or more events, here with one-element arrays; for a batch of one it
-- uses keyed_insert.sql's form. scripts/bench.sh runs both with pgbench at 1 client, so what the
-- array form would cost a lone event is visible. When store.rs changes a statement, change it
-- here too.
\set k random(1, 9223372036854775806)
INSERT INTO events (event_type, event_payload, idempotency_key, occurred_at)
SELECT t, p, k, o FROM unnest(ARRAY['sensor.temperature']::text[], ARRAY['{"sensor": "greenhouse-2", "celsius": 23.7}']::text[], ARRAY[:k::text]::text[], ARRAY[now()]::timestamptz[])
    WITH ORDINALITY AS batch(t, p, k, o, n) ORDER BY n
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, idempotency_key, received_at;
