-- The plainest statement that does the consumer's job for one event: a keyed INSERT that skips
-- a repeated key and returns the row. scripts/bench.sh runs it with pgbench at 1 client next to
-- consumer_statement.sql; the difference in their rates is what the statement's shape costs.
\set k random(1, 9223372036854775806)
INSERT INTO events (event_type, event_payload, idempotency_key, occurred_at)
VALUES ('sensor.temperature', '{"sensor": "greenhouse-2", "celsius": 23.7}', :k::text, now())
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, idempotency_key, received_at;
