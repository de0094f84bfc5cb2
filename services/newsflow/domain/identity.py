"""Every id and stream name in the log, derived from content so that a replay or a rebuild yields the same ones."""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = uuid.UUID("6f0c5b1e-4a53-4f57-9a55-6e657773666c")
_ENTITY_NAMESPACE = uuid.UUID("5b0c3f57-52e4-4c0e-9d7f-4f1d1f6d2a10")

ARTICLE_STREAM_PREFIX = "article-"
STORY_STREAM_PREFIX = "story-"
REJECTION_STREAM_PREFIX = "rejection-"
CONSUMER_STREAM_PREFIX = "consumer-"


def article_id_for(url: str) -> uuid.UUID:
    """One article per URL: a re-scrape of the same URL is a new version of the same article."""
    return uuid.uuid5(_NAMESPACE, url.strip())


def article_stream(article_id: uuid.UUID) -> str:
    return f"{ARTICLE_STREAM_PREFIX}{article_id}"


def story_id_for(first_article_id: uuid.UUID) -> uuid.UUID:
    """The id of the story an article starts: derived from the article, so a replay gives the same ids."""
    return uuid.uuid5(_NAMESPACE, f"story:{first_article_id}")


def story_stream(story_id: uuid.UUID) -> str:
    return f"{STORY_STREAM_PREFIX}{story_id}"


def rejection_stream(rejection_event_id: uuid.UUID) -> str:
    """A rejected message has no article to belong to: its stream is named after its own event."""
    return f"{REJECTION_STREAM_PREFIX}{rejection_event_id}"


def consumer_stream(group_id: str) -> str:
    """Decisions about a consumer group's positions (offset resets) go to this stream."""
    return f"{CONSUMER_STREAM_PREFIX}{group_id}"


def entity_id_for(entity_type: str, key: str) -> uuid.UUID:
    """A registry entity: its type and the folded key of the first name it was registered under."""
    return uuid.uuid5(_ENTITY_NAMESPACE, f"{entity_type}:{key}")


def feed_record_id(kind: str, *parts: object) -> uuid.UUID:
    """A story-feed record's id: the same record published again (after a restart) has the same id."""
    return uuid.uuid5(_NAMESPACE, ":".join(["feed", kind, *(str(p) for p in parts)]))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
