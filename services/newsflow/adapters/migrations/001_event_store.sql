-- The event store: one append-only table, protected by the database itself.
CREATE SCHEMA IF NOT EXISTS newsflow;

CREATE TABLE IF NOT EXISTS newsflow.events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL CHECK (stream_version >= 1),
    type            text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);
CREATE INDEX IF NOT EXISTS events_type_position ON newsflow.events (type, position);

CREATE OR REPLACE FUNCTION newsflow.refuse_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'newsflow.events is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Correct a past event by appending a new one.';
END $$;

DROP TRIGGER IF EXISTS events_append_only ON newsflow.events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON newsflow.events
    FOR EACH ROW EXECUTE FUNCTION newsflow.refuse_event_change();
DROP TRIGGER IF EXISTS events_no_truncate ON newsflow.events;
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON newsflow.events
    FOR EACH STATEMENT EXECUTE FUNCTION newsflow.refuse_event_change();

-- Kafka offsets live beside the events they produced (same transaction).
CREATE TABLE IF NOT EXISTS newsflow.consumer_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    cluster_id  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Positions of the log readers (projections, clusterer), written with their output.
CREATE TABLE IF NOT EXISTS newsflow.checkpoints (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Roles. Grants are the second wall around the events table, after the trigger.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'newsflow_writer') THEN
        CREATE ROLE newsflow_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'newsflow_dashboard') THEN
        CREATE ROLE newsflow_dashboard LOGIN;
    END IF;
END $$;

REVOKE ALL ON newsflow.events FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA newsflow TO newsflow_writer;
GRANT SELECT, INSERT ON newsflow.events TO newsflow_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON newsflow.events FROM newsflow_writer;
GRANT SELECT, INSERT, UPDATE ON newsflow.consumer_offsets, newsflow.checkpoints TO newsflow_writer;
ALTER ROLE newsflow_dashboard SET default_transaction_read_only = on;
