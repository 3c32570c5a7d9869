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

-- Retention (consumer.retention_days) deletes the oldest rows first, in chunks found through
-- this index. db_init_script.sh builds it CONCURRENTLY on a database made before it existed,
-- so a large table keeps taking writes meanwhile. CREATE INDEX locks the table (SHARE, which
-- waits for and then holds up inserts) even when the index exists, so the catalog is asked
-- first and a current table is never locked.
DO $$
BEGIN
    IF to_regclass('events_received_at') IS NULL THEN
        CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at);
    END IF;
END $$;
