-- The stable, documented surface for dashboards (see docs/sql.md). Read-only role.
CREATE SCHEMA IF NOT EXISTS dashboard;

CREATE OR REPLACE VIEW dashboard.stories AS
SELECT s.story_id AS id,
       s.headline,
       s.lead,
       s.first_seen,
       s.last_seen,
       s.article_count,
       cardinality(s.sources) AS source_count,
       s.sources,
       s.languages
FROM projection.stories s;

CREATE OR REPLACE VIEW dashboard.articles AS
SELECT a.article_id AS id,
       a.url,
       a.source,
       a.title,
       a.lead,
       a.language_hint AS language,
       a.published_at,
       a.fetched_at,
       a.first_seen,
       a.revision,
       a.word_count,
       a.story_id
FROM projection.articles a;

CREATE OR REPLACE VIEW dashboard.story_articles AS
SELECT a.story_id, a.article_id, a.url, a.source, a.title, a.published_at, a.story_score AS score
FROM projection.articles a
WHERE a.story_id IS NOT NULL;

CREATE OR REPLACE VIEW dashboard.rejections AS
SELECT r.position, r.reason, r.detail, r.topic, r.kafka_partition, r.kafka_offset, r.message_key,
       r.raw_size, r.rejected_at
FROM projection.rejections r;

REVOKE ALL ON ALL TABLES IN SCHEMA projection FROM PUBLIC;
GRANT USAGE ON SCHEMA dashboard TO newsflow_dashboard;
GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO newsflow_dashboard;
