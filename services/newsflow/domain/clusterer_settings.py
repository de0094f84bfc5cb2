"""The story clusterer's version and settings: what a recorded decision was made with."""

from __future__ import annotations

from dataclasses import dataclass, replace

CLUSTERER_VERSION = "6"


@dataclass(frozen=True)
class ClustererSettings:
    """The fixed settings (chosen on the dev sets, docs/stories.md); tests and experiments may pass others."""

    threshold: float = 0.23  # join the best story when its score reaches this, else start a new story
    merge_threshold: float = 0.30  # other candidate stories scoring this high are merged into the joined one
    title_rep: int = 2  # title tokens count this many times
    lead_tokens: int = 0  # the first body tokens count once more (0 = off)
    ent_rep: float = 1.0  # weight of each canonical entity as an "@entity" term (0 = off)
    w_centroid: float = 0.7  # similarity = w · cos(story centroid) + (1 − w) · max cos(recent members)
    w_title: float = 0.3  # ... or, if higher, w_title · cos(title, story's title centroid) (0 = off)
    title_terms: int = 100  # terms kept in a story's title centroid
    title_keys: int = 3  # the title's heaviest (rarest) terms also look candidate stories up
    sigma_days: float = 7.0  # time factor = floor + (1 − floor) · exp(−gap² / 2σ²), gap to the story's edges
    time_floor: float = 0.9
    window_days: float = 365.0  # stories idle longer than this (behind the latest article seen) are forgotten
    max_stories: int = 10_000  # and beyond this many live stories, the longest idle ones are forgotten first
    centroid_terms: int = 300  # terms kept in a story's centroid (the heaviest)
    top_terms: int = 20  # an article's top terms: the keys it looks candidate stories up with
    index_terms: int = 40  # a story is indexed under its centroid's heaviest terms, this many
    member_terms: int = 50  # terms kept per member vector
    members: int = 10  # member vectors kept per story: the first and the latest
    # Delayed re-merge of background pieces (0 = off): a small story (at most ``remerge_max_size``
    # articles, its last more than ``remerge_gap_days`` before the story's first) is merged into the
    # story an article joins when cos(centroid(story + article), its centroid) reaches this.
    remerge_threshold: float = 0.24
    remerge_max_size: int = 2
    remerge_gap_days: float = 7.0
    # Small stories leaving the live index (idle past the window, or the longest idle beyond the cap)
    # are archived until their last article is this old (at most ``archive_max``, oldest out first),
    # indexed under their ``archive_terms`` heaviest terms; only the re-merge reads the archive, and
    # only when the joined story reaches a power-of-two size, so it costs O(log size) per story.
    archive_days: float = 730.0
    archive_max: int = 10_000
    archive_terms: int = 10
    # The dense signal (ArticleEmbedded; docs/stories.md "The dense signal"), both parts off at 0:
    # score += w_dense · (cos(article, story's mean vector) − dense_center); in a language none of
    # the story's members has, a cosine of cross_threshold is worth the join threshold. Vectors are
    # compared after their language's mean is taken out: sum / (count + center_shrink).
    w_dense: float = 0.3
    dense_center: float = 0.2
    cross_threshold: float = 0.2
    center_shrink: float = 1.0


# The dense signal everywhere: its term in every match score, and the join threshold it was tuned with.
# Measured (docs/stories.md): UCI +0.07, WikiRef220 +0.19, but Giveme5W1H all and Gedikli a little worse.
EVERYWHERE = ClustererSettings()
# The default: the dense signal only across languages. An article in a language none of its candidate
# story's articles has may join on its vector; within a language the decisions are version 5's, so no
# monolingual set is worse than before the signal.
SETTINGS = replace(EVERYWHERE, w_dense=0.0, threshold=0.17)
# The dense signal off: version 5's decisions.
TERMS_ONLY = replace(SETTINGS, cross_threshold=0.0)
SIGNALS = {"across_languages": SETTINGS, "everywhere": EVERYWHERE, "off": TERMS_ONLY}
