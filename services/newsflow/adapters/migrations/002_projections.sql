-- Read models built from the event log by the projector. Rebuildable from the log.
CREATE SCHEMA IF NOT EXISTS projection;

CREATE TABLE IF NOT EXISTS projection.articles (
    article_id     uuid PRIMARY KEY,
    url            text        NOT NULL,
    source         text        NOT NULL,
    title          text,
    lead           text        NOT NULL,
    word_count     integer     NOT NULL,
    language_hint  text,
    published_at   timestamptz,
    fetched_at     timestamptz NOT NULL,
    first_seen     timestamptz NOT NULL,
    revision       integer     NOT NULL,
    story_id       uuid,
    story_score    real,
    last_position  bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS articles_story ON projection.articles (story_id);
CREATE INDEX IF NOT EXISTS articles_source_published ON projection.articles (source, published_at DESC);

CREATE TABLE IF NOT EXISTS projection.stories (
    story_id       uuid PRIMARY KEY,
    headline       text,
    lead           text        NOT NULL,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    article_count  integer     NOT NULL,
    sources        text[]      NOT NULL,
    languages      text[]      NOT NULL,
    terms          text[]      NOT NULL,
    grouping       text        NOT NULL
);
CREATE INDEX IF NOT EXISTS stories_last_seen ON projection.stories (last_seen DESC);
CREATE INDEX IF NOT EXISTS stories_terms ON projection.stories USING gin (terms);

CREATE TABLE IF NOT EXISTS projection.rejections (
    position       bigint PRIMARY KEY,
    reason         text        NOT NULL,
    detail         text        NOT NULL,
    topic          text,
    kafka_partition integer,
    kafka_offset   bigint,
    message_key    text,
    raw_size       integer     NOT NULL,
    rejected_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_reason ON projection.rejections (reason, rejected_at DESC);
