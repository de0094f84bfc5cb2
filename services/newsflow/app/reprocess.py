"""`newsflow reprocess --stage NAME [--since TIME]`: run one stage again over stored articles.

The stage reads what it read the first time (the latest ``ArticleReceived`` for
``clean``, the latest ``ArticleCleaned`` for the others) and
appends a new event with its current version to each article's stream. Old
events stay; projections apply events in log order, so they follow the latest.
Useful after a stage's code or model changed (its ``STAGE_VERSION`` moved).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from tqdm import tqdm

from newsflow.adapters import chrome_store, dedup_store, postgres
from newsflow.domain import stages
from newsflow.domain.cleaning import cleaner, learned_chrome
from newsflow.domain.contract import RawArticleV1
from newsflow.domain.events import ArticleCleaned, ArticleLanguageDetected, ArticleReceived, NewEvent
from newsflow.ingest import entity_plan
from newsflow.ingest.known_names import KnownNamesCache
from newsflow.ingest.stage_runner import StageRunner

log = structlog.get_logger(__name__)

STAGES = ("clean", "language", "entities", "dedup")
_INPUT = {
    "clean": ArticleReceived.event_type,
    "language": ArticleCleaned.event_type,
    "entities": ArticleCleaned.event_type,
    "dedup": ArticleCleaned.event_type,
}
CHUNK = 100


async def _latest(conn: asyncpg.Connection, event_type: str, since: dt.datetime | None) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT DISTINCT ON (stream_id) stream_id, event_id, payload FROM newsflow.events
        WHERE type = $1 AND ($2::timestamptz IS NULL OR recorded_at >= $2)
        ORDER BY stream_id, position DESC
        """,
        event_type,
        since,
    )
    return rows


async def _languages(conn: asyncpg.Connection, streams: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (stream_id) stream_id, payload->>'code' AS code FROM newsflow.events
        WHERE type = $1 AND stream_id = ANY($2::text[]) ORDER BY stream_id, position DESC
        """,
        ArticleLanguageDetected.event_type,
        list(streams),
    )
    return {r["stream_id"]: r["code"] for r in rows}


def _metadata(row: asyncpg.Record, stage: str, requested_at: str) -> dict[str, Any]:
    return {**stages.caused_by(row["event_id"]), "reprocess": {"stage": stage, "requested_at": requested_at}}


def _cleaned_again(
    rows: Sequence[asyncpg.Record], learned: learned_chrome.LearnedChrome, requested_at: str
) -> list[NewEvent]:
    events: list[NewEvent] = []
    for row in rows:
        msg = RawArticleV1.model_validate(row["payload"]["message"])
        result = stages.clean(msg, learned.for_source(msg.source))
        if isinstance(result, cleaner.CleaningFailure):
            log.warning("reprocess.skipped", stream=row["stream_id"], reason=result.reason, detail=result.detail)
            continue
        payload = stages.cleaned_payload(row["payload"]["article_id"], msg, result)
        events.append(NewEvent.of(row["stream_id"], payload, _metadata(row, "clean", requested_at)))
    return events


def _languages_again(rows: Sequence[asyncpg.Record], requested_at: str) -> list[NewEvent]:
    events: list[NewEvent] = []
    for row in rows:
        p = row["payload"]
        lang = stages.detect_language(p["title"], p["text"])
        payload = stages.language_payload(p["article_id"], lang, p["language_hint"])
        events.append(NewEvent.of(row["stream_id"], payload, _metadata(row, "language", requested_at)))
    return events


async def _entities_again(
    rows: Sequence[asyncpg.Record],
    conn: asyncpg.Connection,
    runner: StageRunner,
    known: KnownNamesCache | None,
    requested_at: str,
) -> list[NewEvent]:
    codes = await _languages(conn, [r["stream_id"] for r in rows])

    async def one(row: asyncpg.Record) -> NewEvent:
        code = codes.get(row["stream_id"], "und")
        text, article_id = row["payload"]["text"], row["payload"]["article_id"]
        found, failure = await entity_plan.run_stage(runner, text, code, article_id, known)
        payload = stages.entities_payload(row["payload"]["article_id"], code, found, failure=failure)
        return NewEvent.of(row["stream_id"], payload, _metadata(row, "entities", requested_at))

    return list(await asyncio.gather(*(one(r) for r in rows)))


async def _events_for(
    stage: str,
    rows: Sequence[asyncpg.Record],
    conn: asyncpg.Connection,
    runner: StageRunner | None,
    learned: learned_chrome.LearnedChrome,
    known: KnownNamesCache | None,
    requested_at: str,
) -> list[NewEvent]:
    if stage == "clean":
        return _cleaned_again(rows, learned, requested_at)
    if stage == "language":
        return _languages_again(rows, requested_at)
    assert runner is not None
    return await _entities_again(rows, conn, runner, known, requested_at)


async def reprocess(
    pool: asyncpg.Pool,
    runner: StageRunner | None,
    stage: str,
    since: dt.datetime | None = None,
    progress: bool = False,
    fallback: bool = True,
) -> int:
    """Re-run ``stage`` over the articles whose stage input was recorded since ``since``; returns events appended.

    ``runner`` (stage worker processes) is needed for ``entities`` only; ``fallback``: a language with no
    model gets the known-name pass over today's registry, as in the pipeline.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    if stage == "entities" and runner is None:
        raise ValueError("the entities stage runs in stage workers: pass a StageRunner")
    requested_at = dt.datetime.now(dt.UTC).isoformat()
    if stage == "dedup":
        return await _reprocess_dedup(pool, since, requested_at)
    learned = learned_chrome.LearnedChrome()
    known = KnownNamesCache(pool) if fallback else None
    async with pool.acquire() as conn:
        rows = await _latest(conn, _INPUT[stage], since)
        await chrome_store.refresh(conn, learned)
    appended = 0
    with tqdm(total=len(rows), desc=f"reprocess {stage}", unit="article", disable=not progress) as bar:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            async with pool.acquire() as conn:
                events = await _events_for(stage, chunk, conn, runner, learned, known, requested_at)
                async with conn.transaction():
                    await postgres.lock_appends(conn)
                    await postgres.append(conn, events)
            appended += len(events)
            bar.update(len(chunk))
    log.info("reprocess.done", stage=stage, articles=len(rows), events=appended)
    return appended


async def _reprocess_dedup(pool: asyncpg.Pool, since: dt.datetime | None, requested_at: str) -> int:
    """Re-key articles in the order they were first seen, each judged only against articles seen before it.

    One transaction under the append lock: the dedup tables must not change under
    the re-keying, so ingestion waits for it (about 2 ms per article).
    """
    async with pool.acquire() as conn, conn.transaction():
        await postgres.lock_appends(conn)
        rows = await conn.fetch(
            """
            SELECT c.stream_id, c.event_id, c.payload, d.seen_seq
            FROM (
                SELECT DISTINCT ON (stream_id) stream_id, event_id, payload, recorded_at FROM newsflow.events
                WHERE type = $1 ORDER BY stream_id, position DESC
            ) AS c
            LEFT JOIN newsflow.dedup_articles d ON d.article_id = (c.payload->>'article_id')::uuid
            WHERE $2::timestamptz IS NULL OR c.recorded_at >= $2
            ORDER BY d.seen_seq NULLS LAST, c.stream_id
            """,
            ArticleCleaned.event_type,
            since,
        )
        events: list[NewEvent] = []
        for row in rows:
            article_id = uuid.UUID(row["payload"]["article_id"])
            key = stages.key_text(row["payload"]["text"])
            keyed = NewEvent.of(
                row["stream_id"], stages.dedup_payload(article_id, key), _metadata(row, "dedup", requested_at)
            )
            events.append(keyed)
            duplicate = await dedup_store.judge(
                conn, article_id, row["stream_id"], row["payload"]["url"], key, keyed.event_id, row["seen_seq"]
            )
            if duplicate:
                events.append(duplicate)
        await postgres.append(conn, events)
    log.info("reprocess.done", stage="dedup", articles=len(rows), events=len(events))
    return len(events)
