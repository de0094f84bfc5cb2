-- The story feed's alerts: one row per story and rule that fired, written in the transaction that moves
-- the feed reader's checkpoint, so an alert fires once per story and rule across restarts. Not derived
-- from the log alone (it records what the feed published), so no rebuild touches it. Only the services'
-- role reads and adds rows; nothing updates or deletes them, and the dashboard role gets nothing.
CREATE TABLE IF NOT EXISTS newsflow.story_alerts (
    story_id    uuid        NOT NULL,
    rule        text        NOT NULL,
    threshold   integer     NOT NULL,
    value       integer     NOT NULL,
    record_id   uuid        NOT NULL,
    event_id    uuid        NOT NULL,
    position    bigint      NOT NULL,
    fired_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (story_id, rule)
);
REVOKE ALL ON newsflow.story_alerts FROM PUBLIC;
GRANT SELECT, INSERT ON newsflow.story_alerts TO newsflow_writer;
