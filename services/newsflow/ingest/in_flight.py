"""Records fetched and not yet committed, and the committer that appends them in each partition's order.

Up to ``limit`` records are being cleaned and enriched at once. The committer
appends, one transaction at a time, every record that is ready: its stages are
done and every earlier record of its partition has committed. So the stage
workers do not idle through fetches, look-ups and commits; one slow article
holds back only the records behind it in its own partition; and each
partition's stored offset only ever moves over a contiguous run of applied
records. A failed commit ends the committer, and with it the worker, before
anything else commits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from newsflow.domain.stages import Outcome, SourceRecord


@dataclass
class Pending:
    """One fetched record on its way through the stages; ``outcome`` finishes when all are done."""

    seq: int  # fetch order, across partitions: the order of a transaction's events
    record: SourceRecord
    outcome: asyncio.Task[Outcome]
    ms: dict[str, float]  # wall time per stage, for batch.committed


class InFlight:
    def __init__(self, limit: int, commit: Callable[[Sequence[Pending]], Awaitable[None]]) -> None:
        self.limit = limit
        self._commit = commit
        self._pending: dict[int, deque[Pending]] = {}
        self.count = 0
        self._seq = 0
        # Set after every commit and whenever a record's stages finish; waiters re-check their condition.
        self._changed = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._committer = asyncio.create_task(self._commit_loop(), name="pipeline-committer")

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add(self, pending: Pending) -> None:
        self._pending.setdefault(pending.record.partition, deque()).append(pending)
        self.count += 1
        pending.outcome.add_done_callback(lambda _: self._changed.set())

    async def room(self) -> int:
        """How many more records may be fetched now (at least 1); raises if the committer failed."""
        await self._wait_for(lambda: self.count < self.limit or self._failed())
        self._raise_if_failed()
        return self.limit - self.count

    async def drain(self) -> None:
        """Wait until every record in flight has committed; raises if a commit failed."""
        await self._wait_for(lambda: self.count == 0 or self._failed())
        if self.count:
            self._raise_if_failed()

    async def close(self) -> None:
        """Stop the committer and every record's stages (what was not committed is fetched again)."""
        waiting: list[asyncio.Future[Any]] = [p.outcome for queue in self._pending.values() for p in queue]
        if self._committer is not None:
            waiting.append(self._committer)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)

    async def reset(self) -> None:
        """Drop every record in flight (they are fetched again) and start a new committer."""
        await self.close()
        self._pending.clear()
        self.count = 0
        self.start()

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    def _failed(self) -> bool:
        return self._committer is not None and self._committer.done()

    def _raise_if_failed(self) -> None:
        if self._failed():
            assert self._committer is not None
            self._committer.result()  # raises the commit's error
            raise RuntimeError("the pipeline committer stopped")

    def _ready(self) -> list[Pending]:
        """The leading records of each partition whose stages are done (a failed one raises in the committer)."""
        ready: list[Pending] = []
        for queue in self._pending.values():
            for p in queue:
                if not p.outcome.done():
                    break
                ready.append(p)
        return ready

    async def _commit_loop(self) -> None:
        try:
            while True:
                await self._wait_for(lambda: bool(self._ready()))
                ready = sorted(self._ready(), key=lambda p: p.seq)
                await self._commit(ready)
                for p in ready:
                    self._pending[p.record.partition].popleft()
                self.count -= len(ready)
                self._changed.set()
        finally:
            self._changed.set()
