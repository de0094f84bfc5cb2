"""New version, revision or redelivery of a URL, and the events each adds to the log."""

from __future__ import annotations

import uuid

from newsflow.domain import entities, stages
from newsflow.domain.events import ArticleDuplicateDetected, NewEvent
from newsflow.domain.revisions import StoredVersion, Verdict, VersionLedger, version_events
from seed_articles import seed_message

STREAM = "article-1"
SEED = "001_698f00567ab2257d.txt"


def test_an_unknown_article_is_new_at_revision_one() -> None:
    assert VersionLedger({}).judge(STREAM, "a") == Verdict("new", 1)


def test_the_same_content_again_is_a_redelivery_and_changes_nothing() -> None:
    ledger = VersionLedger({STREAM: StoredVersion("a", 3)})
    assert ledger.judge(STREAM, "a") == Verdict("redelivery", 3)
    assert ledger.judge(STREAM, "b") == Verdict("revision", 4, "a")


def test_changed_content_is_the_next_revision() -> None:
    ledger = VersionLedger({STREAM: StoredVersion("a", 2), "article-2": StoredVersion("x", 1)})
    assert ledger.judge(STREAM, "b") == Verdict("revision", 3, "a")
    assert ledger.judge("article-2", "x") == Verdict("redelivery", 1)


def test_deliveries_in_one_ledger_are_judged_against_the_one_before() -> None:
    ledger = VersionLedger({})
    assert ledger.judge(STREAM, "a") == Verdict("new", 1)
    assert ledger.judge(STREAM, "b") == Verdict("revision", 2, "a")
    assert ledger.judge(STREAM, "b") == Verdict("redelivery", 2)
    assert ledger.judge(STREAM, "a") == Verdict("revision", 3, "b")


def test_the_ledger_does_not_change_the_stored_mapping() -> None:
    stored = {STREAM: StoredVersion("a", 1)}
    VersionLedger(stored).judge(STREAM, "b")
    assert stored == {STREAM: StoredVersion("a", 1)}


def accepted_version() -> stages.Accepted:
    msg = seed_message(SEED)
    record = stages.SourceRecord("raw", 0, 7, msg.url.encode(), msg.model_dump_json().encode())
    result = stages.clean_record(record, msg, (), "raw.dlq")
    assert isinstance(result, stages.Accepted), result
    return result.with_event(stages.entities_event(result, entities.Entities(True, [])))


def duplicate_event(o: stages.Accepted) -> NewEvent:
    canonical = uuid.UUID("00000000-0000-5000-8000-000000000001")
    payload = ArticleDuplicateDetected(
        article_id=o.article_id,
        stage_version="1",
        kind="exact",
        canonical_article_id=canonical,
        canonical_url="https://example.invalid/canonical",
        matched_article_id=canonical,
        similarity=1.0,
        containment=None,
    )
    return NewEvent.of(o.stream_id, payload, {})


STAGE_TYPES = ["ArticleReceived", "ArticleCleaned", "ArticleLanguageDetected", "ArticleDedupKeyed", "ArticleEmbedded"]


def test_a_new_version_puts_dedup_events_just_before_entities() -> None:
    o = accepted_version()
    dup = duplicate_event(o)
    events = version_events(o, Verdict("new", 1), [dup])
    assert [e.type for e in events] == [*STAGE_TYPES, "ArticleDuplicateDetected", "ArticleEntitiesExtracted"]
    assert events[:5] == o.events[:5]
    assert events[5] is dup
    assert events[6] is o.events[5]


def test_a_new_version_without_dedup_events_keeps_the_stage_events() -> None:
    o = accepted_version()
    assert version_events(o, Verdict("new", 1), []) == o.events


def test_a_revision_announces_itself_right_after_received() -> None:
    o = accepted_version()
    dup = duplicate_event(o)
    events = version_events(o, Verdict("revision", 4, "f" * 64), [dup])
    assert [e.type for e in events] == [
        "ArticleReceived",
        "ArticleRevised",
        *STAGE_TYPES[1:],
        "ArticleDuplicateDetected",
        "ArticleEntitiesExtracted",
    ]
    received, revised = events[0], events[1]
    assert received is o.events[0]
    assert revised.stream_id == o.stream_id
    assert revised.payload == {
        "article_id": str(o.article_id),
        "revision": 4,
        "previous_content_sha256": "f" * 64,
        "content_sha256": o.content_sha256,
    }
    assert revised.metadata == {"causation": {"kind": "event", "event_id": str(received.event_id)}}


def test_a_redelivery_adds_no_events() -> None:
    o = accepted_version()
    assert version_events(o, Verdict("redelivery", 2), [duplicate_event(o)]) == []
