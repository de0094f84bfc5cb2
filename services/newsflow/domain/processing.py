"""What the pipeline concludes about one Kafka record, as events to append. Pure: no I/O."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

from newsflow.domain import normalize
from newsflow.domain.contract import CONTRACT_VERSION, RawArticleV1, Rejection, decode_raw_message
from newsflow.domain.events import ArticleNormalized, ArticleReceived, ArticleRejected, NewEvent, Payload
from newsflow.domain.identity import article_id_for, article_stream, sha256_hex

RAW_PREVIEW_BYTES = 4096


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
    events: list[NewEvent]


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
    )
    event_id = uuid.uuid4()
    event = NewEvent.of(
        f"rejection-{event_id}", payload, {"causation": record.causation()}, event_id=event_id
    )
    return Rejected(record, rejection, event)


def process_record(record: SourceRecord, dead_letter_topic: str) -> Accepted | Rejected:
    decoded = decode_raw_message(record.value)
    if isinstance(decoded, Rejection):
        return reject(record, decoded, dead_letter_topic)
    normalized = normalize.normalize_article(decoded)
    if not normalized.text:
        return reject(
            record,
            Rejection("empty_body", f"no text left after {normalize.STAGE_NAME} v{normalize.STAGE_VERSION}"),
            dead_letter_topic,
        )
    article_id = article_id_for(decoded.url)
    stream = article_stream(article_id)
    fingerprint = content_fingerprint(decoded)
    received = NewEvent.of(
        stream,
        ArticleReceived(
            article_id=article_id,
            contract_version=CONTRACT_VERSION,
            content_sha256=fingerprint,
            message=decoded.model_dump(mode="json", exclude_none=True),
        ),
        {"causation": record.causation()},
    )
    normalized_event = NewEvent.of(
        stream,
        ArticleNormalized(
            article_id=article_id,
            stage_version=normalize.STAGE_VERSION,
            url=decoded.url,
            source=decoded.source,
            title=normalized.title,
            text=normalized.text,
            word_count=normalized.word_count,
            published_at=decoded.published_at,
            fetched_at=decoded.fetched_at,
            language_hint=decoded.language,
            removed_lines=normalized.removed_lines,
        ),
        {"causation": {"kind": "event", "event_id": str(received.event_id)}, "origin": record.causation()},
    )
    return Accepted(record, article_id, stream, fingerprint, [received, normalized_event])
