-- pgbench's transaction for scripts/bench.sh's ceiling: the consumer's table, a similar row, a
-- random key in the unique index like the consumer's (wrk sends random Idempotency-Keys).
INSERT INTO events (event_type, event_payload, idempotency_key) VALUES ('sensor.temperature', '{"sensor": "greenhouse-2", "celsius": 23.7}', gen_random_uuid()::text);
