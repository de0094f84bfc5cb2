-- Stories decided by the online clusterer (StoryStarted / ArticleAssignedToStory / StoriesMerged events)
-- replace the naive grouping. Projections are rebuildable from the log, so the story projection is
-- recreated here and its checkpoint reset: the projector replays the log into the new shape.

CREATE TABLE IF NOT EXISTS newsflow.reader_snapshots (
    name      text PRIMARY KEY,
    position  bigint      NOT NULL,
    version   text        NOT NULL,
    state     bytea       NOT NULL,
    articles  integer     NOT NULL,
    taken_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON newsflow.reader_snapshots TO newsflow_writer;
-- Which story is an article in: the clusterer asks the log when its bounded cache does not know.
CREATE INDEX IF NOT EXISTS events_assigned_article ON newsflow.events ((payload->>'article_id'))
    WHERE type = 'ArticleAssignedToStory';

DROP VIEW IF EXISTS dashboard.stories, dashboard.story_articles, dashboard.articles,
    dashboard.rejections, dashboard.entity_mentions;
DROP TABLE IF EXISTS projection.stories;

CREATE TABLE projection.stories (
    story_id                  uuid PRIMARY KEY,
    clusterer_version         text        NOT NULL,
    started_position          bigint      NOT NULL,
    headline                  text,
    lead                      text,
    representative_article_id uuid,
    first_seen                timestamptz,
    last_seen                 timestamptz,
    article_count             integer     NOT NULL DEFAULT 0,
    canonical_count           integer     NOT NULL DEFAULT 0,
    duplicate_count           integer     NOT NULL DEFAULT 0,
    source_count              integer     NOT NULL DEFAULT 0,
    sources                   text[]      NOT NULL DEFAULT '{}',
    languages                 text[]      NOT NULL DEFAULT '{}',
    top_entities              text[]      NOT NULL DEFAULT '{}',
    last_position             bigint      NOT NULL
);
CREATE INDEX stories_last_seen ON projection.stories (last_seen DESC);
CREATE INDEX stories_first_seen ON projection.stories (first_seen DESC);

CREATE TABLE projection.story_merges (
    merged_story_id      uuid PRIMARY KEY,
    into_story_id        uuid   NOT NULL,
    bridging_article_id  uuid   NOT NULL,
    position             bigint NOT NULL
);
CREATE INDEX story_merges_into ON projection.story_merges (into_story_id);

ALTER TABLE projection.articles
    DROP COLUMN IF EXISTS story_score,
    ADD COLUMN story_role            text,
    ADD COLUMN story_started         boolean,
    ADD COLUMN story_score           real,
    ADD COLUMN story_shared_entities text[],
    ADD COLUMN story_top_terms       text[],
    ADD COLUMN story_duplicate_of    uuid,
    ADD COLUMN story_position        bigint;
DROP INDEX IF EXISTS projection.articles_story;
CREATE INDEX articles_story_seen ON projection.articles (story_id, first_seen);
CREATE INDEX articles_first_seen ON projection.articles (first_seen DESC);
ALTER TABLE projection.rejections ADD COLUMN source text;
CREATE INDEX rejections_source ON projection.rejections (source, rejected_at);
CREATE INDEX entities_name ON projection.entities (name);

TRUNCATE projection.articles, projection.rejections, projection.entities, projection.entity_aliases,
    projection.article_entities;
DELETE FROM newsflow.checkpoints WHERE name = 'projection.stories';

CREATE VIEW dashboard.stories AS
SELECT s.story_id AS id,
       s.headline,
       s.lead,
       s.representative_article_id,
       s.first_seen,
       s.last_seen,
       s.article_count,
       s.canonical_count,
       s.duplicate_count,
       s.source_count,
       s.sources,
       s.languages,
       s.top_entities,
       CASE WHEN s.last_seen >= now() - interval '24 hours' THEN 'developing'
            WHEN s.last_seen >= now() - interval '72 hours' THEN 'cooling'
            ELSE 'stale' END AS status,
       s.clusterer_version
FROM projection.stories s
WHERE s.article_count > 0;  -- a story's first page may end between StoryStarted and its first article

CREATE VIEW dashboard.articles AS
SELECT a.article_id AS id,
       a.url,
       a.source,
       a.title,
       a.lead,
       a.language,
       a.language_confidence,
       a.published_at,
       a.fetched_at,
       a.first_seen,
       a.revision,
       a.word_count,
       a.story_id,
       a.story_role,
       a.story_score,
       a.duplicate_of_url AS duplicate_of,
       a.duplicate_kind,
       a.duplicate_similarity
FROM projection.articles a;

-- Why an article is in its story, in words: the one wording the view and `newsflow stories show` use.
CREATE FUNCTION dashboard.story_why(role text, started boolean, score real, shared_entities text[],
                                    top_terms text[], duplicate_of text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN role = 'duplicate' THEN
            'duplicate of ' || duplicate_of || ' (similarity ' || to_char(score, 'FM0.000') || ')'
        WHEN started THEN 'started the story'
        ELSE 'score ' || to_char(score, 'FM0.000')
             || coalesce('; shared entities: ' || nullif(array_to_string(shared_entities, ', '), ''), '')
             || coalesce('; shared terms: ' || nullif(array_to_string(top_terms, ', '), ''), '')
    END
$$;

CREATE VIEW dashboard.story_articles AS
SELECT a.story_id,
       a.article_id,
       a.url,
       a.source,
       a.title,
       a.published_at,
       a.first_seen,
       a.language,
       a.story_role AS role,
       a.story_started AS started,
       a.story_score AS score,
       a.story_shared_entities AS shared_entities,
       a.story_top_terms AS top_terms,
       a.story_duplicate_of AS duplicate_of,
       a.duplicate_kind,
       dashboard.story_why(a.story_role, a.story_started, a.story_score, a.story_shared_entities,
                           a.story_top_terms, coalesce(c.url, a.story_duplicate_of::text)) AS why
FROM projection.articles a
LEFT JOIN projection.articles c ON c.article_id = a.story_duplicate_of
WHERE a.story_id IS NOT NULL;

CREATE VIEW dashboard.story_timeline AS
SELECT a.story_id,
       date_trunc('hour', a.first_seen) AS hour,
       count(*) AS articles,
       count(*) FILTER (WHERE a.story_role = 'canonical') AS canonical,
       count(*) FILTER (WHERE a.story_role = 'duplicate') AS duplicates,
       count(DISTINCT a.source) AS sources
FROM projection.articles a
WHERE a.story_id IS NOT NULL
GROUP BY a.story_id, date_trunc('hour', a.first_seen);

CREATE VIEW dashboard.story_entities AS
SELECT a.story_id, e.entity_id, e.name, e.type, count(*) AS articles, sum(ae.mentions) AS mentions
FROM projection.articles a
JOIN projection.article_entities ae ON ae.article_id = a.article_id
JOIN projection.entities e ON e.entity_id = ae.entity_id
WHERE a.story_id IS NOT NULL
GROUP BY a.story_id, e.entity_id, e.name, e.type;

CREATE VIEW dashboard.story_merges AS
SELECT m.merged_story_id, m.into_story_id, m.bridging_article_id, m.position
FROM projection.story_merges m;

CREATE VIEW dashboard.entity_mentions AS
SELECT ae.entity_id, e.name, e.type, ae.article_id, a.url, a.source, a.title, a.story_id, ae.mentions, ae.seen_at
FROM projection.article_entities ae
JOIN projection.entities e ON e.entity_id = ae.entity_id
JOIN projection.articles a ON a.article_id = ae.article_id;

CREATE VIEW dashboard.rejections AS
SELECT r.position, r.reason, r.detail, r.source, r.topic, r.kafka_partition, r.kafka_offset, r.message_key,
       r.raw_size, r.rejected_at
FROM projection.rejections r;

CREATE VIEW dashboard.sources AS
WITH arts AS (
    SELECT a.source,
           count(*) AS articles,
           count(*) FILTER (WHERE a.duplicate_of IS NULL) AS canonical,
           count(*) FILTER (WHERE a.duplicate_of IS NOT NULL) AS duplicates,
           count(DISTINCT a.story_id) AS stories,
           min(a.first_seen) AS first_seen,
           max(a.first_seen) AS last_seen
    FROM projection.articles a
    GROUP BY a.source
), rej AS (
    SELECT r.source, count(*) AS rejected
    FROM projection.rejections r
    WHERE r.source IS NOT NULL
    GROUP BY r.source
)
SELECT coalesce(arts.source, rej.source) AS source,
       coalesce(arts.articles, 0) AS articles,
       coalesce(arts.canonical, 0) AS canonical,
       coalesce(arts.duplicates, 0) AS duplicates,
       round(coalesce(arts.duplicates, 0)::numeric / nullif(arts.articles, 0), 4) AS duplicate_rate,
       coalesce(rej.rejected, 0) AS rejected,
       round(coalesce(rej.rejected, 0)::numeric
             / nullif(coalesce(arts.articles, 0) + coalesce(rej.rejected, 0), 0), 4) AS rejection_rate,
       coalesce(arts.stories, 0) AS stories,
       arts.first_seen,
       arts.last_seen
FROM arts FULL JOIN rej ON rej.source = arts.source;

REVOKE ALL ON projection.stories, projection.story_merges FROM PUBLIC;
REVOKE ALL ON newsflow.reader_snapshots FROM PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO newsflow_dashboard;
