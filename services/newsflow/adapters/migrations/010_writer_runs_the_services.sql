-- The services connect as newsflow_writer; only migrations run as the owner. The writer appends
-- events (never updates or deletes them: 001), moves offsets and checkpoints, and maintains the
-- derived tables, which a rebuild recomputes from the log. It owns nothing, so it cannot alter the
-- schema or its grants. Its password is set at migration time, as the dashboard role's is.
ALTER ROLE newsflow_writer LOGIN;
GRANT USAGE ON SCHEMA projection, dashboard TO newsflow_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA projection TO newsflow_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA projection TO newsflow_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO newsflow_writer;
GRANT TRUNCATE ON newsflow.source_chrome_lines TO newsflow_writer;
