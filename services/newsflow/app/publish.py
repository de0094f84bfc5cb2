"""Act as a scraper: turn files into raw article messages and send them to the raw topic."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from newsflow.adapters import kafka

HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
MANIFEST = "manifest.json"


def manifest_for(directory: Path) -> dict[str, dict[str, object]]:
    path = directory / MANIFEST
    return json.loads(path.read_text())["files"] if path.exists() else {}


def message_for_file(path: Path, source: str | None, overrides: dict[str, object] | None = None) -> dict[str, object]:
    """A contract-v1 message for one text or HTML file; manifest overrides win."""
    content = path.read_text(encoding="utf-8", errors="replace")
    body_field = "html" if path.suffix.lower() in HTML_SUFFIXES else "text"
    message: dict[str, object] = {
        "url": path.resolve().as_uri(),
        "source": source or path.parent.name or "local",
        "fetched_at": dt.datetime.now(dt.UTC).isoformat(),
        body_field: content,
        "scraper_id": "newsflow-publish",
    }
    message.update(overrides or {})
    return message


def iter_messages(paths: list[Path], source: str | None = None) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) pairs. JSONL lines are sent byte for byte, valid or not: that is how bad input is tested."""
    for path in paths:
        if path.is_dir():
            manifest = manifest_for(path)
            files = sorted(p for p in path.iterdir() if p.is_file() and p.name != MANIFEST)
            for f in files:
                if f.suffix.lower() in {".jsonl", ".json"}:
                    yield from iter_messages([f], source)
                else:
                    msg = message_for_file(f, source, manifest.get(f.name))
                    yield str(msg["url"]).encode(), json.dumps(msg, ensure_ascii=False).encode()
        elif path.suffix.lower() == ".jsonl":
            with path.open("rb") as fh:
                for line in fh:
                    line = line.rstrip(b"\r\n")
                    if line:
                        yield _key_of(line), line
        elif path.suffix.lower() == ".json":
            raw = path.read_bytes()
            yield _key_of(raw), raw
        else:
            msg = message_for_file(path, source)
            yield str(msg["url"]).encode(), json.dumps(msg, ensure_ascii=False).encode()


def _key_of(raw: bytes) -> bytes | None:
    try:
        url = json.loads(raw).get("url")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return url.encode() if isinstance(url, str) else None


async def publish(
    bootstrap: str, topic: str, paths: list[Path], source: str | None = None, progress: bool = True
) -> int:
    messages = list(iter_messages(paths, source))
    producer = kafka.make_producer(bootstrap, linger_ms=0, max_request_size=16 * 1024 * 1024)
    await producer.start()
    try:
        # One record per produce request: the embedded tansu broker reports a wrong log end
        # (ListOffsets) for multi-record batches, which would defeat the consumer's offset checks.
        for key, value in tqdm(messages, desc=f"publish → {topic}", unit="msg", disable=not progress):
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()
    return len(messages)
