"""The Kafka headers a dead letter carries: why it was rejected and where it came from."""

from __future__ import annotations

import datetime as dt

from newsflow.adapters.kafka import MAX_HEADER_VALUE, dead_letter_headers
from newsflow.domain import stages
from newsflow.domain.contract import Rejection


def rejected(
    detail: str = "Expecting value at line 1 column 1",
    key: bytes | None = b"https://example.invalid/a",
    cluster_id: str | None = "cluster-a",
) -> stages.Rejected:
    record = stages.SourceRecord("raw", 2, 1234, key, b"not json", cluster_id=cluster_id)
    return stages.reject(record, Rejection("invalid_json", detail), "raw.dlq")


def test_headers_name_the_reason_and_the_original_record() -> None:
    r = rejected()
    before = dt.datetime.now(dt.UTC)
    headers = dead_letter_headers(r)
    after = dt.datetime.now(dt.UTC)
    assert [name for name, _ in headers] == [
        "newsflow.error.reason",
        "newsflow.error.detail",
        "newsflow.original.topic",
        "newsflow.original.partition",
        "newsflow.original.offset",
        "newsflow.original.cluster_id",
        "newsflow.rejection.event_id",
        "newsflow.rejected_at",
    ]
    assert all(isinstance(value, bytes) for _, value in headers)
    values = dict(headers)
    assert values["newsflow.error.reason"] == b"invalid_json"
    assert values["newsflow.error.detail"] == b"Expecting value at line 1 column 1"
    assert values["newsflow.original.topic"] == b"raw"
    assert values["newsflow.original.partition"] == b"2"
    assert values["newsflow.original.offset"] == b"1234"
    assert values["newsflow.original.cluster_id"] == b"cluster-a"
    assert values["newsflow.rejection.event_id"] == str(r.event.event_id).encode()
    rejected_at = dt.datetime.fromisoformat(values["newsflow.rejected_at"].decode())
    assert rejected_at.utcoffset() == dt.timedelta(0)
    assert before <= rejected_at <= after


def test_detail_is_utf8_encoded() -> None:
    values = dict(dead_letter_headers(rejected("Unerwartetes Zeichen „ü“")))
    assert values["newsflow.error.detail"] == "Unerwartetes Zeichen „ü“".encode()


def test_an_over_long_detail_is_cut_to_the_header_limit() -> None:
    detail = "0123456789" * 1000
    values = dict(dead_letter_headers(rejected(detail)))
    assert values["newsflow.error.detail"] == detail[:MAX_HEADER_VALUE].encode()
    assert len(values["newsflow.error.detail"]) == MAX_HEADER_VALUE == 4096


def test_a_record_without_key_or_cluster_id() -> None:
    r = rejected(key=None, cluster_id=None)
    values = dict(dead_letter_headers(r))
    assert values["newsflow.original.cluster_id"] == b""
    assert values["newsflow.original.offset"] == b"1234"
    assert r.event.payload["key"] is None
