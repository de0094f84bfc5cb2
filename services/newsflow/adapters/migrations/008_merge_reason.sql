-- Clusterer version 4 merges for two reasons: an article bridging stories, or a small older
-- story recognised as the background of the one an article joined (StoriesMerged v2 `reason`).
ALTER TABLE projection.story_merges ADD COLUMN reason text NOT NULL DEFAULT 'bridge'
    CHECK (reason IN ('bridge', 'background'));

CREATE OR REPLACE VIEW dashboard.story_merges AS
SELECT m.merged_story_id, m.into_story_id, m.bridging_article_id, m.position, m.reason
FROM projection.story_merges m;
