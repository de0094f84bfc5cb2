"""The versioned contract for raw article messages published by scrapers.

A message is one JSON object, UTF-8, keyed by its URL. ``decode_raw_message``
turns the bytes of a Kafka record into either a validated ``RawArticleV1`` or a
``Rejection`` with a specific, stable reason code; it never raises for bad input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

CONTRACT_VERSION = 1
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class RawArticleV1(BaseModel):
    """Raw article as a scraper saw it (contract version 1)."""

    model_config = ConfigDict(extra="forbid", str_max_length=MAX_MESSAGE_BYTES, title="RawArticle")

    schema_version: Literal[1] = Field(1, description="Contract version. Omitted means 1.")
    url: str = Field(
        ...,
        min_length=8,
        max_length=4096,
        pattern=r"^(https?|file)://\S+$",
        description="Canonical article URL; also the Kafka message key.",
    )
    source: str = Field(..., min_length=1, max_length=200, description="Outlet or site name, stable per site.")
    fetched_at: AwareDatetime = Field(..., description="When the scraper fetched the page (ISO 8601 with offset).")
    html: str | None = Field(None, description="Raw HTML of the page. One of html/text is required.")
    text: str | None = Field(None, description="Scraped text of the page. One of html/text is required.")
    title: str | None = Field(None, max_length=2000, description="Title as the scraper saw it.")
    published_at: AwareDatetime | None = Field(None, description="Publication time claimed by the page.")
    language: str | None = Field(
        None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="Language hint (ISO 639-1/3, optional region)."
    )
    scraper_id: str | None = Field(None, max_length=200, description="Which scraper produced the message.")

    @model_validator(mode="after")
    def _has_body(self) -> RawArticleV1:
        if not (self.html and self.html.strip()) and not (self.text and self.text.strip()):
            raise PydanticCustomError("empty_body", "message has no html and no text (or only whitespace)")
        return self


RawArticle = RawArticleV1

RejectionReason = Literal[
    "empty_message",
    "too_large",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "unsupported_schema_version",
    "missing_field",
    "invalid_field",
    "empty_body",
    # Raised by the cleaning stage (newsflow.domain.cleaning.cleaner) and its runner:
    "binary_content",
    "html_too_deep",
    "empty_after_cleaning",
    "cleaning_timeout",
    "cleaning_crashed",
    # A record batch the consumer could not decode (newsflow.ingest.undecodable); one rejection per batch:
    "crc_mismatch",
    "unknown_codec",
    "undecodable_batch",
]


@dataclass(frozen=True)
class Rejection:
    reason: RejectionReason
    detail: str
    errors: list[dict[str, str]] = field(default_factory=list)


def raw_article_json_schema() -> dict[str, object]:
    """The JSON Schema checked into ``schemas/`` (a test keeps the two equal)."""
    schema = RawArticleV1.model_json_schema()
    schema["$id"] = "https://newsflow.dev/schemas/raw_article.v1.json"
    schema["description"] = (
        "Raw article message published by a scraper to the raw topic. Key: the URL (UTF-8). "
        "At least one of html/text must be non-blank."
    )
    return schema


def _classify(exc: ValidationError) -> Rejection:
    errors = [
        {"loc": ".".join(str(p) for p in err["loc"]) or "(message)", "type": err["type"], "msg": err["msg"]}
        for err in exc.errors(include_url=False)
    ]
    types = {e["type"] for e in errors}
    if "empty_body" in types:
        reason: RejectionReason = "empty_body"
    elif any(e["loc"] == "schema_version" for e in errors):
        reason = "unsupported_schema_version"
    elif "missing" in types:
        reason = "missing_field"
    else:
        reason = "invalid_field"
    detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
    return Rejection(reason, detail, errors)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: object) -> object:
    """NUL and lone surrogates (legal in JSON escapes) cannot be stored in PostgreSQL text.

    NUL carries no meaning in an article and is dropped; a lone surrogate becomes U+FFFD.
    """
    if isinstance(value, str) and _UNSTORABLE.search(value):
        return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", value)
    return value


def decode_raw_message(value: bytes | None) -> RawArticleV1 | Rejection:
    """Bytes of one Kafka record → validated article or a specific rejection."""
    if not value:
        return Rejection("empty_message", "record value is empty")
    if len(value) > MAX_MESSAGE_BYTES:
        return Rejection("too_large", f"record is {len(value)} bytes, limit is {MAX_MESSAGE_BYTES}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("invalid_utf8", f"not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejection("invalid_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(data, dict):
        return Rejection("not_an_object", f"top-level JSON value is {type(data).__name__}, expected object")
    try:
        return RawArticleV1.model_validate({k: _storable(v) for k, v in data.items()})
    except ValidationError as exc:
        return _classify(exc)
