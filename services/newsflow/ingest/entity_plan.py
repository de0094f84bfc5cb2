"""The entity stage on stage workers: the pieces of a long text go to several workers at once.

The result equals ``entities.extract`` on the whole text (same pieces, same
mentions, one ``resolve``); only the wall time differs.
"""

from __future__ import annotations

import asyncio

from newsflow.domain import entities
from newsflow.ingest.stage_runner import StageRunner


async def extract(runner: StageRunner, text: str, language: str) -> entities.Entities:
    spans = entities.chunk_spans(text)
    if language not in entities.SUPPORTED_LANGUAGES or len(spans) <= 1:
        return await runner.run(entities.extract, text, language)
    pieces = await asyncio.gather(*(runner.run(entities.mentions_in, text[s:e], s) for s, e in spans))
    return await runner.run(entities.resolve, [m for piece in pieces for m in piece], text)
