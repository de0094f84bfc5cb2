"""Stable identifiers derived from content, so that a rebuild yields the same ids."""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = uuid.UUID("6f0c5b1e-4a53-4f57-9a55-6e657773666c")


def article_id_for(url: str) -> uuid.UUID:
    """One article per URL: a re-scrape of the same URL is a new version of the same article."""
    return uuid.uuid5(_NAMESPACE, url.strip())


ARTICLE_STREAM_PREFIX = "article-"


def article_stream(article_id: uuid.UUID) -> str:
    return f"{ARTICLE_STREAM_PREFIX}{article_id}"


def story_id_for(first_article_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"story:{first_article_id}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
