-- The one schema of the event store. Applied by db_init_script.sh and by the test harness;
-- no service code creates or alters tables. Safe to apply twice.

CREATE TABLE IF NOT EXISTS events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type      text        NOT NULL,
    event_payload   text        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    -- Set from the request's Idempotency-Key header; a retried request finds its first row here.
    idempotency_key text UNIQUE
);
