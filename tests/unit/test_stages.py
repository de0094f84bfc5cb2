"""The stage sequence as events: decode, clean, language, dedup key, entities, and rejections."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from newsflow.domain import entities, stages
from newsflow.domain.contract import RawArticleV1, Rejection
from newsflow.domain.identity import article_id_for, article_stream
from seed_articles import cleaned, seed_message

SEED = "000_0a4c76719d70d0cd.txt"
CHROME_ONLY = "Leave a Reply\n\nYour email address will not be published. Required fields are marked *"
SPANISH = (
    "El presidente del Gobierno se reunió este jueves con los líderes de la oposición para discutir el presupuesto "
    "del próximo año.\n\nLa reunión duró más de tres horas y terminó sin un acuerdo, según fuentes cercanas a las "
    "negociaciones."
)


def message(**fields: object) -> RawArticleV1:
    base = {"url": "https://example.invalid/a", "source": "Example", "fetched_at": "2024-06-25T08:00:00+00:00"}
    return RawArticleV1.model_validate({**base, **fields})


def record_of(msg: RawArticleV1) -> stages.SourceRecord:
    return stages.SourceRecord("raw", 3, 41, msg.url.encode(), msg.model_dump_json().encode(), cluster_id="cluster-a")


def accepted(msg: RawArticleV1) -> stages.Accepted:
    result = stages.clean_record(record_of(msg), msg, (), "raw.dlq")
    assert isinstance(result, stages.Accepted), result
    return result


def kafka_causation() -> dict[str, object]:
    return {"kind": "kafka", "topic": "raw", "partition": 3, "offset": 41, "cluster_id": "cluster-a"}


def test_decode_record_validates_a_json_message() -> None:
    msg = seed_message(SEED)
    assert stages.decode_record(record_of(msg)) == msg


@pytest.mark.parametrize(
    ("value", "reason"),
    [(b"\xff\xfe", "invalid_utf8"), (b"{nope", "invalid_json"), (b"[1]", "not_an_object"), (None, "empty_message")],
)
def test_decode_record_rejects_bad_bytes(value: bytes | None, reason: str) -> None:
    result = stages.decode_record(stages.SourceRecord("raw", 0, 1, None, value))
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.detail


def test_clean_record_emits_the_stage_events_in_order_on_the_article_stream() -> None:
    msg = seed_message(SEED)
    result = accepted(msg)
    stream = article_stream(article_id_for(msg.url))
    assert result.article_id == article_id_for(msg.url)
    assert result.stream_id == stream
    assert result.content_sha256 == stages.content_fingerprint(msg)
    assert (result.url, result.source) == (msg.url, "Ns News Online")
    assert [e.type for e in result.events] == [
        "ArticleReceived",
        "ArticleCleaned",
        "ArticleLanguageDetected",
        "ArticleDedupKeyed",
        "ArticleEmbedded",
    ]
    assert {e.stream_id for e in result.events} == {stream}
    assert len({e.event_id for e in result.events}) == 5
    received = result.event("ArticleReceived")
    assert received.payload["content_sha256"] == result.content_sha256
    assert received.payload["message"] == msg.model_dump(mode="json", exclude_none=True)


def test_clean_record_chains_causation() -> None:
    received, cleaned_event, language, keyed, embedded = accepted(seed_message(SEED)).events
    assert received.metadata == {"causation": kafka_causation()}
    assert cleaned_event.metadata == {
        "causation": {"kind": "event", "event_id": str(received.event_id)},
        "origin": kafka_causation(),
    }
    by_cleaned = {"causation": {"kind": "event", "event_id": str(cleaned_event.event_id)}}
    assert language.metadata == by_cleaned
    assert keyed.metadata == by_cleaned
    assert embedded.metadata == by_cleaned


def test_clean_record_rejects_a_message_of_only_chrome() -> None:
    msg = message(text=CHROME_ONLY)
    result = stages.clean_record(record_of(msg), msg, (), "raw.dlq")
    assert isinstance(result, stages.Rejected)
    assert result.rejection.reason == "empty_after_cleaning"
    assert result.event.type == "ArticleRejected"
    assert result.event.stream_id == f"rejection-{result.event.event_id}"
    assert result.event.payload["reason"] == "empty_after_cleaning"
    assert result.event.payload["source"] == "Example"
    assert result.event.payload["dead_letter_topic"] == "raw.dlq"


def test_reject_records_the_raw_bytes_and_what_they_claim() -> None:
    raw = json.dumps({"url": "https://example.invalid/a", "source": "  La Verdad  ", "text": 7}).encode()
    record = stages.SourceRecord("raw", 1, 9, b"https://example.invalid/a", raw, cluster_id="cluster-a")
    rejected = stages.reject(record, Rejection("invalid_field", "text: not a string"), "raw.dlq")
    payload = rejected.event.payload
    assert payload["reason"] == "invalid_field"
    assert payload["detail"] == "text: not a string"
    assert payload["raw_size"] == len(raw)
    assert payload["raw_sha256"] == hashlib.sha256(raw).hexdigest()
    assert base64.b64decode(payload["raw_preview"]) == raw
    assert payload["key"] == "https://example.invalid/a"
    assert payload["dead_letter_topic"] == "raw.dlq"
    assert payload["source"] == "La Verdad"
    assert rejected.event.metadata == {"causation": record.causation()}
    assert rejected.event.stream_id == f"rejection-{rejected.event.event_id}"
    assert rejected.record is record


@pytest.mark.parametrize("raw", [b"\xff\xfe not json", b'["source"]', b'{"source": "  "}', b'{"source": 3}', b""])
def test_reject_claims_no_source_when_none_can_be_read(raw: bytes) -> None:
    rejected = stages.reject(stages.SourceRecord("raw", 0, 0, None, raw), Rejection("invalid_json", "x"), "dlq")
    assert rejected.event.payload["source"] is None
    assert rejected.event.payload["key"] is None
    assert rejected.event.payload["raw_size"] == len(raw)


def test_reject_previews_only_the_first_bytes() -> None:
    raw = bytes(range(256)) * 40
    rejected = stages.reject(stages.SourceRecord("raw", 0, 0, None, raw), Rejection("invalid_utf8", "x"), "dlq")
    assert base64.b64decode(rejected.event.payload["raw_preview"]) == raw[: stages.RAW_PREVIEW_BYTES]
    assert rejected.event.payload["raw_size"] == 10240


def test_content_fingerprint_ignores_fetch_time_and_scraper_but_not_text() -> None:
    msg = message(text="Some article text.", scraper_id="s1")
    same = message(text="Some article text.", scraper_id="s2", fetched_at="2025-01-01T00:00:00+02:00")
    changed = message(text="Some other article text.", scraper_id="s1")
    assert stages.content_fingerprint(msg) == stages.content_fingerprint(same)
    assert stages.content_fingerprint(msg) != stages.content_fingerprint(changed)
    assert len(stages.content_fingerprint(msg)) == 64


def test_enrich_agrees_with_what_clean_record_records() -> None:
    msg = seed_message(SEED)
    enriched = stages.enrich(msg)
    assert isinstance(enriched, stages.Enriched)
    result = accepted(msg)
    cleaned_payload = result.event("ArticleCleaned").payload
    assert (cleaned_payload["title"], cleaned_payload["text"]) == (enriched.cleaned.title, enriched.cleaned.text)
    assert cleaned_payload["text"] == cleaned(msg).text
    assert result.event("ArticleLanguageDetected").payload["code"] == enriched.language.code == "en"
    assert result.event("ArticleDedupKeyed").payload["exact_key"] == enriched.dedup_key.exact_key
    assert result.dedup_key == enriched.dedup_key


def test_entities_event_for_a_language_without_a_model() -> None:
    result = accepted(message(text=SPANISH))
    assert result.event("ArticleLanguageDetected").payload["code"] == "es"
    found = stages.find_entities(result.event("ArticleCleaned").payload["text"], "es")
    event = stages.entities_event(result, found)
    assert event.type == "ArticleEntitiesExtracted"
    assert event.payload["language"] == "es"
    assert event.payload["supported"] is False
    assert event.payload["entities"] == []


def test_entities_event_carries_the_found_entities_and_is_caused_by_cleaning() -> None:
    result = accepted(seed_message(SEED))
    found = entities.Entities(
        True, [{"name": "Samarkand", "type": "place", "count": 2, "first_offset": 5, "aliases": []}]
    )
    event = stages.entities_event(result, found)
    assert event.stream_id == result.stream_id
    assert event.payload["supported"] is True
    assert event.payload["entities"] == found.entities
    assert event.metadata == {"causation": {"kind": "event", "event_id": str(result.events[1].event_id)}}
    assert result.with_event(event).events[-1] is event


def test_find_entities_is_the_entity_extractor() -> None:
    text = cleaned(seed_message(SEED)).text
    found = stages.find_entities(text, "en")
    assert found == entities.extract(text, "en")
    assert "Vladimir Putin" in {e["name"] for e in found.entities}
