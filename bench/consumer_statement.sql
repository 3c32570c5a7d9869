-- The consumer's insert for a batch of one, as event_consumer/src/store.rs prepares it: three
-- one-element arrays through unnest WITH ORDINALITY. scripts/bench.sh runs it with pgbench at 1
-- client next to keyed_insert.sql, so the cost of the statement's shape is visible. When
-- store.rs changes the statement (say, to return the ordinality), change it here too.
\set k random(1, 9223372036854775806)
INSERT INTO events (event_type, event_payload, idempotency_key)
SELECT t, p, k FROM unnest(ARRAY['sensor.temperature']::text[], ARRAY['{"sensor": "greenhouse-2", "celsius": 23.7}']::text[], ARRAY[:k::text]::text[])
    WITH ORDINALITY AS batch(t, p, k, n) ORDER BY n
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, idempotency_key, received_at;
