"""`newsflow inspect`: what the stages make of one file, without Kafka or PostgreSQL.

It builds the message exactly as `newsflow publish` would (a manifest.json next
to the file supplies source, URL and dates), then runs the same contract check
and stage code as the pipeline. The JSON keys are a stable interface.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from newsflow.app.publish import manifest_for, message_for_file
from newsflow.domain import dedup, entities, language, stages
from newsflow.domain.cleaning import cleaner
from newsflow.domain.contract import Rejection, decode_raw_message


def raw_message(path: Path, source: str | None = None, url: str | None = None) -> bytes:
    """The raw Kafka value for a text/HTML file or one raw JSON message."""
    if path.suffix.lower() == ".json":
        raw = path.read_bytes()
        if source is None and url is None:
            return raw
        message = json.loads(raw)
    else:
        message = message_for_file(path, source, manifest_for(path.parent).get(path.name))
    if source is not None:
        message["source"] = source
    if url is not None:
        message["url"] = url
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


def inspect_message(raw: bytes) -> dict[str, Any]:
    decoded = decode_raw_message(raw)
    if isinstance(decoded, Rejection):
        return {"rejected": {"reason": decoded.reason, "detail": decoded.detail, "errors": decoded.errors}}
    enriched = stages.enrich(decoded)
    if isinstance(enriched, cleaner.CleaningFailure):
        return {"rejected": {"reason": enriched.reason, "detail": enriched.detail, "errors": []}}
    result, lang, key = enriched.cleaned, enriched.language, enriched.dedup_key
    metadata: dict[str, Any] = {
        "url": decoded.url,
        "source": decoded.source,
        "published_at": decoded.published_at.isoformat() if decoded.published_at else None,
        "fetched_at": decoded.fetched_at.isoformat(),
        "language_hint": decoded.language,
        **result.metadata,
    }
    found = stages.find_entities(result.text, lang.code)
    return {
        "title": result.title,
        "text": result.text,
        "metadata": metadata,
        "removed": [{"text": r.text, "reason": r.reason} for r in result.removed],
        "removed_counts": result.removed_counts(),
        "word_count": result.word_count,
        "input_kind": result.input_kind,
        "language": {"code": lang.code, "confidence": lang.confidence},
        "entities": found.entities,
        "entities_supported": found.supported,
        "dedup": {
            "exact_key": key.exact_key,
            "signature_version": dedup.SIGNATURE_VERSION,
            "shingles": key.shingle_count,
            "bands": len(key.bands),
        },
        "stages": {
            cleaner.STAGE_NAME: {"version": cleaner.CLEANER_VERSION, "extractor": result.extractor},
            language.STAGE_NAME: {"version": language.STAGE_VERSION, "detector": language.DETECTOR},
            entities.STAGE_NAME: {"version": entities.STAGE_VERSION, "model": entities.model_for(lang.code)},
            dedup.STAGE_NAME: {"version": dedup.STAGE_VERSION},
        },
    }


def render(report: dict[str, Any]) -> str:
    if "rejected" in report:
        r = report["rejected"]
        return f"REJECTED ({r['reason']}): {r['detail']}"
    lang = report["language"]
    lines = [
        f"title: {report['title']}",
        f"language: {lang['code']} ({lang['confidence']:.2f})",
        f"exact key: {report['dedup']['exact_key']}",
    ]
    lines += [f"{key}: {value}" for key, value in report["metadata"].items() if value]
    found = ", ".join(f"{e['name']} ({e['type']}, {e['count']})" for e in report["entities"])
    lines.append(
        f"entities: {found or ('none' if report['entities_supported'] else 'not supported for this language')}"
    )
    lines.append(f"removed {len(report['removed'])} lines:")
    lines += [f"  - [{r['reason']}] {r['text']}" for r in report["removed"]]
    lines += [f"text ({report['word_count']} words):", "", report["text"]]
    return "\n".join(lines)
