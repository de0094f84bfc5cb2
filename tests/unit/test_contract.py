"""The raw-message contract: JSON Schema kept in step, and a specific reason for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newsflow.domain.contract import RawArticleV1, Rejection, decode_raw_message, raw_article_json_schema

SCHEMA_FILE = Path(__file__).parents[2] / "schemas" / "raw_article.v1.json"

VALID = {
    "url": "https://example.org/a",
    "source": "Example",
    "fetched_at": "2022-09-15T10:00:00+00:00",
    "text": "Body text.",
}


def test_checked_in_json_schema_equals_the_model() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == raw_article_json_schema(), (
        "schemas/raw_article.v1.json is stale: regenerate with `newsflow schema > schemas/raw_article.v1.json`"
    )


def test_valid_message_decodes() -> None:
    msg = decode_raw_message(json.dumps(VALID).encode())
    assert isinstance(msg, RawArticleV1)
    assert msg.schema_version == 1 and msg.text == "Body text."


@pytest.mark.parametrize(
    ("raw", "reason", "detail_part"),
    [
        (b"", "empty_message", "empty"),
        (b"\xff\xfe{not utf8", "invalid_utf8", "byte 0"),
        (b'{"url": ', "invalid_json", "line 1"),
        (b"[1, 2]", "not_an_object", "list"),
        (json.dumps({**VALID, "schema_version": 7}).encode(), "unsupported_schema_version", "schema_version"),
        (json.dumps({k: v for k, v in VALID.items() if k != "fetched_at"}).encode(), "missing_field", "fetched_at"),
        (json.dumps({**VALID, "fetched_at": "yesterday"}).encode(), "invalid_field", "fetched_at"),
        (json.dumps({**VALID, "fetched_at": "2022-09-15T10:00:00"}).encode(), "invalid_field", "timezone"),
        (json.dumps({**VALID, "url": "not a url"}).encode(), "invalid_field", "url"),
        (json.dumps({**VALID, "source": 42}).encode(), "invalid_field", "source"),
        (json.dumps({**VALID, "text": "   \n "}).encode(), "empty_body", "no html and no text"),
        (json.dumps({k: v for k, v in VALID.items() if k != "text"}).encode(), "empty_body", "no html"),
        (json.dumps({**VALID, "txt": "typo"}).encode(), "invalid_field", "txt"),
    ],
)
def test_bad_input_gets_a_specific_reason(raw: bytes, reason: str, detail_part: str) -> None:
    result = decode_raw_message(raw)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert detail_part in result.detail


def test_oversized_message_is_rejected_without_parsing() -> None:
    from newsflow.domain.contract import MAX_MESSAGE_BYTES

    result = decode_raw_message(b" " * (MAX_MESSAGE_BYTES + 1))
    assert isinstance(result, Rejection) and result.reason == "too_large"


def test_unstorable_characters_are_neutralised() -> None:
    msg = decode_raw_message(json.dumps({**VALID, "text": "a\u0000b \ud800c"}).encode())
    assert isinstance(msg, RawArticleV1)
    assert msg.text == "ab \ufffdc"


def test_readme_documents_every_setting() -> None:
    from newsflow.settings import Settings

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`NEWSFLOW_{name.upper()}`" not in readme]
    assert not missing, f"settings not documented in README: {missing}"
