"""The stage sequence, one definition for the worker, ``newsflow inspect`` and ``newsflow reprocess``.

decode (contract) → clean → language → dedup key → vector → entities. The first five are
cheap and run together (``decode_record``, then ``enrich`` in a stage worker);
entities are expensive and run last, once per distinct text (the ingest entity
plan decides whether to run the model or reuse a copy's result). Each stage's
conclusion becomes one event, built here. Pure: no I/O.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass, replace

from newsflow.domain import article_vectors, dedup, entities, language
from newsflow.domain.cleaning import cleaner
from newsflow.domain.contract import CONTRACT_VERSION, RawArticleV1, Rejection, decode_raw_message
from newsflow.domain.events import (
    ArticleCleaned,
    ArticleDedupKeyed,
    ArticleEmbedded,
    ArticleEntitiesExtracted,
    ArticleLanguageDetected,
    ArticleReceived,
    ArticleRejected,
    NewEvent,
    Payload,
    RemovedLine,
)
from newsflow.domain.identity import article_id_for, article_stream, rejection_stream, sha256_hex

RAW_PREVIEW_BYTES = 4096
MAX_REMOVED_LINES = 200
REMOVED_TEXT_CHARS = 500
MAX_SOURCE_CHARS = 200
MAX_SOURCE_PARSE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SourceRecord:
    """A consumed record, independent of the Kafka client that delivered it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    cluster_id: str | None = None

    def causation(self) -> Payload:
        return {
            "kind": "kafka",
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "cluster_id": self.cluster_id,
        }

    def key_text(self) -> str | None:
        return self.key.decode("utf-8", "replace") if self.key is not None else None


@dataclass(frozen=True)
class Accepted:
    record: SourceRecord
    article_id: uuid.UUID
    stream_id: str
    content_sha256: str
    url: str
    source: str
    chrome_candidates: list[str]
    dedup_key: dedup.DedupKey
    events: list[NewEvent]

    def event(self, event_type: str) -> NewEvent:
        return next(e for e in self.events if e.type == event_type)

    def with_event(self, event: NewEvent) -> Accepted:
        return replace(self, events=[*self.events, event])


@dataclass(frozen=True)
class Rejected:
    record: SourceRecord
    rejection: Rejection
    event: NewEvent


Outcome = Accepted | Rejected


def content_fingerprint(msg: RawArticleV1) -> str:
    """Hash of what the page said; fetch time and scraper id do not change the article."""
    content = msg.model_dump(mode="json", include={"url", "source", "html", "text", "title", "published_at"})
    return sha256_hex(json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def claimed_source(raw: bytes) -> str | None:
    """The ``source`` a rejected message claims, if it is a JSON object with a usable one."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    source = value.get("source") if isinstance(value, dict) else None
    if not isinstance(source, str) or not source.strip():
        return None
    return source.strip()[:MAX_SOURCE_CHARS]


def reject(record: SourceRecord, rejection: Rejection, dead_letter_topic: str) -> Rejected:
    raw = record.value or b""
    payload = ArticleRejected(
        reason=rejection.reason,
        detail=rejection.detail,
        errors=rejection.errors,
        raw_sha256=sha256_hex(raw),
        raw_size=len(raw),
        raw_preview=base64.b64encode(raw[:RAW_PREVIEW_BYTES]).decode("ascii"),
        key=record.key_text(),
        dead_letter_topic=dead_letter_topic,
        source=claimed_source(raw) if len(raw) <= MAX_SOURCE_PARSE_BYTES else None,
    )
    event_id = uuid.uuid4()
    event = NewEvent.of(rejection_stream(event_id), payload, {"causation": record.causation()}, event_id=event_id)
    return Rejected(record, rejection, event)


def decode_record(record: SourceRecord) -> RawArticleV1 | Rejection:
    return decode_raw_message(record.value)


@dataclass(frozen=True)
class Enriched:
    """What the cheap stages conclude about one valid message."""

    cleaned: cleaner.Cleaned
    language: language.Language
    dedup_key: dedup.DedupKey
    vector: article_vectors.Vector


def clean(msg: RawArticleV1, learned: Collection[str] = ()) -> cleaner.Cleaned | cleaner.CleaningFailure:
    """The cleaning stage; ``learned`` are the chrome lines learned for the message's source."""
    return cleaner.clean_article(msg, learned)


def detect_language(title: str | None, text: str) -> language.Language:
    return language.detect_article(title, text)


def key_text(text: str) -> dedup.DedupKey:
    return dedup.dedup_key(text)


def embed_text(title: str | None, text: str) -> article_vectors.Vector:
    return article_vectors.embed(title, text)


def enrich(msg: RawArticleV1, learned: Collection[str] = ()) -> Enriched | cleaner.CleaningFailure:
    """The cheap stages in their order: clean, then the language, dedup key and vector of the clean text."""
    cleaned = clean(msg, learned)
    if isinstance(cleaned, cleaner.CleaningFailure):
        return cleaned
    return Enriched(
        cleaned,
        detect_language(cleaned.title, cleaned.text),
        key_text(cleaned.text),
        embed_text(cleaned.title, cleaned.text),
    )


def find_entities(text: str, language_code: str) -> entities.Entities:
    """The entity stage in one piece (the worker spreads a long text over stage workers, same result)."""
    return entities.extract(text, language_code)


def cleaned_payload(article_id: uuid.UUID, msg: RawArticleV1, cleaned: cleaner.Cleaned) -> ArticleCleaned:
    return ArticleCleaned(
        article_id=article_id,
        stage_version=cleaner.CLEANER_VERSION,
        url=msg.url,
        source=msg.source,
        title=cleaned.title,
        text=cleaned.text,
        word_count=cleaned.word_count,
        published_at=msg.published_at,
        fetched_at=msg.fetched_at,
        language_hint=msg.language,
        input_kind=cleaned.input_kind,
        extractor=cleaned.extractor,
        metadata=cleaned.metadata,
        removed=[
            RemovedLine(text=r.text[:REMOVED_TEXT_CHARS], reason=r.reason) for r in cleaned.removed[:MAX_REMOVED_LINES]
        ],
        removed_counts=cleaned.removed_counts(),
        chrome_candidates=list(cleaned.chrome_candidates),
    )


def language_payload(article_id: uuid.UUID, lang: language.Language, hint: str | None) -> ArticleLanguageDetected:
    return ArticleLanguageDetected(
        article_id=article_id,
        stage_version=language.STAGE_VERSION,
        detector=language.DETECTOR,
        code=lang.code,
        confidence=lang.confidence,
        hint=hint,
    )


def dedup_payload(article_id: uuid.UUID, key: dedup.DedupKey) -> ArticleDedupKeyed:
    return ArticleDedupKeyed(
        article_id=article_id,
        stage_version=dedup.STAGE_VERSION,
        signature_version=dedup.SIGNATURE_VERSION,
        exact_key=key.exact_key,
        shingle_count=key.shingle_count,
        signature=base64.b64encode(key.signature).decode("ascii"),
        bands=list(key.bands),
    )


def vector_payload(article_id: uuid.UUID, vector: article_vectors.Vector) -> ArticleEmbedded:
    return ArticleEmbedded(
        article_id=article_id,
        stage_version=article_vectors.STAGE_VERSION,
        model=article_vectors.MODEL,
        dims=len(vector),
        vector=article_vectors.encode(vector),
    )


def entities_payload(
    article_id: uuid.UUID,
    language_code: str,
    found: entities.Entities | None,
    *,
    reused_from: uuid.UUID | None = None,
    failure: str | None = None,
) -> ArticleEntitiesExtracted:
    return ArticleEntitiesExtracted(
        article_id=article_id,
        stage_version=entities.STAGE_VERSION,
        model=(found.model if found else None) or entities.model_for(language_code) or entities.MODEL,
        language=language_code,
        supported=found.supported if found else language_code in entities.SUPPORTED_LANGUAGES,
        entities=found.entities if found else [],
        reused_from=reused_from,
        failure=failure,
    )


def caused_by(event_id: uuid.UUID) -> Payload:
    return {"causation": {"kind": "event", "event_id": str(event_id)}}


def clean_record(
    record: SourceRecord, msg: RawArticleV1, learned: Collection[str], dead_letter_topic: str
) -> Accepted | Rejected:
    """The cheap stages for one validated message, as events. Runs in a stage worker."""
    result = enrich(msg, learned)
    if isinstance(result, cleaner.CleaningFailure):
        return reject(record, Rejection(result.reason, result.detail), dead_letter_topic)  # type: ignore[arg-type]
    article_id = article_id_for(msg.url)
    stream = article_stream(article_id)
    fingerprint = content_fingerprint(msg)
    received = NewEvent.of(
        stream,
        ArticleReceived(
            article_id=article_id,
            contract_version=CONTRACT_VERSION,
            content_sha256=fingerprint,
            message=msg.model_dump(mode="json", exclude_none=True),
        ),
        {"causation": record.causation()},
    )
    cleaned_event = NewEvent.of(
        stream,
        cleaned_payload(article_id, msg, result.cleaned),
        {**caused_by(received.event_id), "origin": record.causation()},
    )
    language_event = NewEvent.of(
        stream, language_payload(article_id, result.language, msg.language), caused_by(cleaned_event.event_id)
    )
    keyed_event = NewEvent.of(stream, dedup_payload(article_id, result.dedup_key), caused_by(cleaned_event.event_id))
    vector_event = NewEvent.of(stream, vector_payload(article_id, result.vector), caused_by(cleaned_event.event_id))
    return Accepted(
        record=record,
        article_id=article_id,
        stream_id=stream,
        content_sha256=fingerprint,
        url=msg.url,
        source=msg.source,
        chrome_candidates=list(result.cleaned.chrome_candidates),
        dedup_key=result.dedup_key,
        events=[received, cleaned_event, language_event, keyed_event, vector_event],
    )


def entities_event(
    accepted: Accepted,
    found: entities.Entities | None,
    *,
    reused_from: uuid.UUID | None = None,
    failure: str | None = None,
) -> NewEvent:
    """The entity stage's event for an article, from a model run, a reuse, or a failure."""
    language_code = accepted.event(ArticleLanguageDetected.event_type).payload["code"]
    payload = entities_payload(accepted.article_id, language_code, found, reused_from=reused_from, failure=failure)
    return NewEvent.of(accepted.stream_id, payload, caused_by(accepted.event(ArticleCleaned.event_type).event_id))
