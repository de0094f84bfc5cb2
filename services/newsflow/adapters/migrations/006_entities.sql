-- The global entity registry (a projection of ArticleEntitiesExtracted): one row per
-- real-world entity, its aliases across articles, and its mentions per article.
CREATE TABLE projection.entities (
    entity_id      uuid PRIMARY KEY,
    type           text        NOT NULL,
    name           text        NOT NULL,
    aliases        text[]      NOT NULL,
    article_count  integer     NOT NULL,
    mention_count  integer     NOT NULL,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL
);
CREATE INDEX entities_mentions ON projection.entities (article_count DESC);

-- Every folded name or alias seen for an entity points at it; the first to claim a key keeps it.
CREATE TABLE projection.entity_aliases (
    type       text NOT NULL,
    alias_key  text NOT NULL,
    entity_id  uuid NOT NULL,
    PRIMARY KEY (type, alias_key)
);

CREATE TABLE projection.article_entities (
    article_id   uuid        NOT NULL,
    entity_id    uuid        NOT NULL,
    mentions     integer     NOT NULL,
    first_offset integer     NOT NULL,
    seen_at      timestamptz NOT NULL,
    PRIMARY KEY (article_id, entity_id)
);
CREATE INDEX article_entities_entity_time ON projection.article_entities (entity_id, seen_at);

CREATE VIEW dashboard.entities AS
SELECT e.entity_id AS id, e.name, e.type, e.aliases, e.article_count, e.mention_count, e.first_seen, e.last_seen
FROM projection.entities e;

CREATE VIEW dashboard.entity_mentions AS
SELECT ae.entity_id, e.name, e.type, ae.article_id, a.url, a.source, a.title, ae.mentions, ae.seen_at
FROM projection.article_entities ae
JOIN projection.entities e ON e.entity_id = ae.entity_id
JOIN projection.articles a ON a.article_id = ae.article_id;

CREATE VIEW dashboard.entity_daily AS
SELECT ae.entity_id, e.name, e.type, date_trunc('day', ae.seen_at) AS day,
       count(*) AS articles, sum(ae.mentions) AS mentions
FROM projection.article_entities ae
JOIN projection.entities e ON e.entity_id = ae.entity_id
GROUP BY ae.entity_id, e.name, e.type, date_trunc('day', ae.seen_at);

REVOKE ALL ON projection.entities, projection.entity_aliases, projection.article_entities FROM PUBLIC;
GRANT SELECT ON dashboard.entities, dashboard.entity_mentions, dashboard.entity_daily TO newsflow_dashboard;
