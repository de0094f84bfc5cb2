-- Per-source chrome learning (newsflow.domain.learned_chrome): how many distinct
-- articles of a source carried each short line, and when the line became chrome.
-- Written by the pipeline in the same transaction as the ArticleCleaned events
-- it counts; rebuildable from those events.
CREATE SEQUENCE newsflow.chrome_learned_seq;

CREATE TABLE newsflow.source_chrome_lines (
    source      text    NOT NULL,
    line_hash   text    NOT NULL,
    articles    integer NOT NULL CHECK (articles > 0),
    -- Set once, from chrome_learned_seq, when the count reaches the threshold.
    -- Appends are serialized, so the order of these numbers is commit order and
    -- a worker can follow new lines with "learned_seq > last one I read".
    learned_seq bigint,
    PRIMARY KEY (source, line_hash)
);

CREATE INDEX source_chrome_lines_learned ON newsflow.source_chrome_lines (learned_seq)
    WHERE learned_seq IS NOT NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON newsflow.source_chrome_lines TO newsflow_writer;
GRANT USAGE ON SEQUENCE newsflow.chrome_learned_seq TO newsflow_writer;
