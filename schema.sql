-- The one schema of the event store. Applied by db_init_script.sh and by the test harness;
-- no service code creates or alters tables. Safe to apply twice, and to a database of an
-- earlier version, which it upgrades in place.

CREATE TABLE IF NOT EXISTS events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type      text        NOT NULL,
    event_payload   text        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    -- Set from the request's Idempotency-Key header; a retried request finds its first row here.
    idempotency_key text UNIQUE,
    -- When the event happened, as its sender said (NULL when it did not say): the instant, not
    -- the offset it was written with, which PostgreSQL does not keep.
    occurred_at     timestamptz
);

-- Upgrade: occurred_at was added after the first release. A nullable column without a default
-- is a change to the catalog only (no table rewrite), but ALTER TABLE takes an exclusive lock
-- even when the column exists, and behind a long transaction (a pg_dump) that lock would hold
-- up every insert; so the catalog is asked first and a current table is never locked.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'events'::regclass AND attname = 'occurred_at'
                     AND NOT attisdropped) THEN
        ALTER TABLE events ADD COLUMN IF NOT EXISTS occurred_at timestamptz;
    END IF;
END $$;

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
