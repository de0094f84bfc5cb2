-- What a person reads in psql stays on one line: a story's headline and lead are shown with every run of
-- whitespace (line breaks included) as one space. The stored text keeps its paragraphs.
CREATE OR REPLACE VIEW dashboard.stories AS
SELECT s.story_id AS id,
       btrim(regexp_replace(s.headline, '\s+', ' ', 'g')) AS headline,
       btrim(regexp_replace(s.lead, '\s+', ' ', 'g')) AS lead,
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

-- "started the story" read as "published first"; it means the first of the story's articles newsflow
-- processed, which an article published earlier but fetched later does not change.
CREATE OR REPLACE FUNCTION dashboard.story_why(role text, started boolean, score real, shared_entities text[],
                                               top_terms text[], duplicate_of text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN role = 'duplicate' THEN
            'duplicate of ' || duplicate_of || ' (similarity ' || to_char(score, 'FM0.000') || ')'
        WHEN started THEN 'started the story (the first of its articles newsflow processed)'
        ELSE 'score ' || to_char(score, 'FM0.000')
             || coalesce('; shared entities: ' || nullif(array_to_string(shared_entities, ', '), ''), '')
             || coalesce('; shared terms: ' || nullif(array_to_string(top_terms, ', '), ''), '')
    END
$$;
