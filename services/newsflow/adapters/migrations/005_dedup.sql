-- Dedup lookup tables (newsflow.domain.dedup), written by the pipeline in the append
-- transaction, so "first seen stays canonical" holds across workers. A fold over
-- ArticleDedupKeyed and ArticleDuplicateDetected events.
CREATE TABLE newsflow.dedup_articles (
    article_id        uuid PRIMARY KEY,
    url               text     NOT NULL,
    signature_version smallint NOT NULL,
    exact_key         text     NOT NULL,
    shingle_count     integer  NOT NULL,
    signature         bytea    NOT NULL,
    -- The first-seen article this one duplicates, or itself when it is canonical.
    canonical_id      uuid     NOT NULL,
    seen_seq          bigserial
);
CREATE INDEX dedup_articles_exact ON newsflow.dedup_articles (exact_key, seen_seq);

-- LSH bands: an article is a near-duplicate candidate when it shares a band hash.
-- The band number is part of the hash, so the hash alone is the lookup key.
CREATE TABLE newsflow.dedup_bands (
    band_hash  bigint NOT NULL,
    article_id uuid   NOT NULL REFERENCES newsflow.dedup_articles ON DELETE CASCADE,
    PRIMARY KEY (band_hash, article_id)
);
CREATE INDEX dedup_bands_article ON newsflow.dedup_bands (article_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON newsflow.dedup_articles, newsflow.dedup_bands TO newsflow_writer;
GRANT USAGE ON SEQUENCE newsflow.dedup_articles_seen_seq_seq TO newsflow_writer;

ALTER TABLE projection.articles
    ADD COLUMN language             text,
    ADD COLUMN language_confidence  real,
    ADD COLUMN duplicate_of         uuid,
    ADD COLUMN duplicate_of_url     text,
    ADD COLUMN duplicate_kind       text,
    ADD COLUMN duplicate_similarity real;
CREATE INDEX articles_duplicate_of ON projection.articles (duplicate_of) WHERE duplicate_of IS NOT NULL;

CREATE OR REPLACE VIEW dashboard.articles AS
SELECT a.article_id AS id,
       a.url,
       a.source,
       a.title,
       a.lead,
       coalesce(a.language, a.language_hint) AS language,
       a.published_at,
       a.fetched_at,
       a.first_seen,
       a.revision,
       a.word_count,
       a.story_id,
       a.language_confidence,
       a.duplicate_of_url AS duplicate_of,
       a.duplicate_kind,
       a.duplicate_similarity
FROM projection.articles a;
