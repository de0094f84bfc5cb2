"""The entity stage, paid once per text: run the model on stage workers, or reuse a copy's result.

A language with no model gets the known-name pass instead (``known_names``),
in this process, when it is on (``NEWSFLOW_ENTITY_FALLBACK``).

Exact duplicates reuse the canonical's result (a run still in flight, or the
stored one), and so do near duplicates whose estimated Jaccard with a stored
article reaches ``NEAR_REUSE_MIN_JACCARD`` (the same wire story under other
site chrome or with light edits: the entity model would find the same names,
plus whatever the foreign chrome mentions). These checks are reads before the
append transaction; the transaction re-checks under the append lock, so a
duplicate missed here (committed concurrently by another worker, or near a text
still in flight) is still recorded as one, it just ran the model itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

import asyncpg
import structlog

from newsflow.adapters import dedup_store
from newsflow.domain import entities, stages
from newsflow.domain.events import ArticleCleaned, ArticleLanguageDetected, NewEvent
from newsflow.domain.language import UNDETERMINED
from newsflow.domain.stages import Accepted, Outcome
from newsflow.ingest.known_names import KnownNamesCache
from newsflow.ingest.stage_runner import StageCrashed, StageRunner, StageTimeout

log = structlog.get_logger(__name__)

NEAR_REUSE_MIN_JACCARD = 0.8


async def extract(runner: StageRunner, text: str, language: str) -> entities.Entities:
    """``stages.find_entities`` on stage workers: the pieces of a long text go to several workers at once.

    The result equals the one-piece run (same pieces, same mentions, one
    ``resolve``); only the wall time differs.
    """
    spans = entities.chunk_spans(text)
    if language not in entities.SUPPORTED_LANGUAGES or len(spans) <= 1:
        return await runner.run(stages.find_entities, text, language)
    pieces = await asyncio.gather(*(runner.run(entities.mentions_in, text[s:e], s, language) for s, e in spans))
    return await runner.run(entities.resolve, [m for piece in pieces for m in piece], text)


async def run_stage(
    runner: StageRunner, text: str, language: str, article_id: object, known: KnownNamesCache | None = None
) -> tuple[entities.Entities | None, str | None]:
    """(entities, None), or (None, why) when the stage failed: the article is kept and says why it has none.

    ``known``: the known-name pass for a language with no model (None: such a language gets no entities; so
    does a text whose language is undetermined). A database error reading the registry is raised, as the
    planner's other reads are (the worker waits out an outage), never recorded as the article's failure.
    """
    if language not in entities.SUPPORTED_LANGUAGES:
        if known is None or language == UNDETERMINED:
            return entities.Entities(False, []), None
        names = await known.current()
        return names.find(text[: entities.MAX_CHARS]), None
    try:
        return await extract(runner, text, language), None
    except (StageTimeout, StageCrashed) as exc:
        return None, str(exc)
    except Exception as exc:  # a bug in stage code must not stall the partition
        log.exception("stage.failed", stage=entities.STAGE_NAME, article_id=str(article_id))
        return None, f"{type(exc).__name__}: {exc}"


class EntityPlanner:
    """Decides, per accepted article, whether to run the model or wait for or reuse another article's result.

    A partition's records plan in offset order (the worker makes each wait for
    the one before it), so of two copies in one partition the earlier one runs
    the model.
    """

    def __init__(self, pool: asyncpg.Pool, runner: StageRunner, *, fallback: bool = True) -> None:
        self.pool = pool
        self.runner = runner
        self.known = KnownNamesCache(pool) if fallback else None
        # Model runs not yet committed, by exact dedup key: a copy fetched meanwhile waits for the run
        # instead of paying for its own (the log cannot answer until the run's record commits).
        self._runs: dict[str, tuple[uuid.UUID, asyncio.Future[NewEvent]]] = {}

    async def plan(self, o: Outcome) -> Awaitable[Outcome]:
        """What to await for ``o`` with its entity event."""
        if not isinstance(o, Accepted):
            return _done(o)
        key = o.dedup_key.exact_key
        if key in self._runs:
            canonical_id, run = self._runs[key]
            return _reuse(o, canonical_id, run)
        async with self.pool.acquire() as conn:
            known = await dedup_store.entities_by_exact_key(conn, [key])
            match = known.get(key) or await _near_match(conn, o)
        if match is not None:
            return _done(with_entities_of(o, *match))
        run = asyncio.ensure_future(self._extract(o))
        self._runs[key] = (o.article_id, run)
        return _own(o, run)

    def forget(self, committed: Sequence[Outcome]) -> None:
        """Once its record is committed, a model run's result is the log's to answer for later copies."""
        for o in committed:
            if isinstance(o, Accepted) and self._runs.get(o.dedup_key.exact_key, (None,))[0] == o.article_id:
                del self._runs[o.dedup_key.exact_key]

    def reset(self) -> None:
        """Forget every run: the records they were for are dropped and fetched again."""
        for _, run in self._runs.values():
            run.cancel()
        self._runs.clear()

    async def _extract(self, o: Accepted) -> NewEvent:
        text = o.event(ArticleCleaned.event_type).payload["text"]
        code = o.event(ArticleLanguageDetected.event_type).payload["code"]
        found, failure = await run_stage(self.runner, text, code, o.article_id, self.known)
        return stages.entities_event(o, found, failure=failure)


async def _done(o: Outcome) -> Outcome:
    return o


async def _own(o: Accepted, run: asyncio.Future[NewEvent]) -> Outcome:
    return o.with_event(await run)


async def _reuse(o: Accepted, canonical_id: uuid.UUID, run: asyncio.Future[NewEvent]) -> Outcome:
    return with_entities_of(o, canonical_id, (await run).payload)


async def _near_match(conn: asyncpg.Connection, o: Accepted) -> tuple[uuid.UUID, dict[str, Any]] | None:
    """(matched article, its entity results) when ``o`` closely repeats a stored article, else None.

    The results reused are those of the stored article the similarity was
    measured against, which need not be the canonical one.
    """
    found = await dedup_store.find_duplicate(conn, o.article_id, o.dedup_key)
    if found is None or found.similarity < NEAR_REUSE_MIN_JACCARD:
        return None
    results = await dedup_store.latest_entities(conn, [found.matched_id])
    return (found.matched_id, results[found.matched_id]) if found.matched_id in results else None


def with_entities_of(o: Accepted, reused_from: uuid.UUID, payload: dict[str, Any]) -> Outcome:
    """``o`` with the entity results of another article (an exact or close copy of it)."""
    event = stages.entities_event(
        o,
        entities.Entities(payload["supported"], payload["entities"], payload.get("model")),
        reused_from=reused_from,
        failure=payload.get("failure"),
    )
    return o.with_event(event)
