"""What this process's loops and pipeline are doing now: read into its health snapshot (``app.health``).

Each long-running loop ticks as it goes round (the pipeline's fetch loop, a log
reader, a wait for the database, the probe); ``/healthz`` calls a loop that has
not ticked for a while stuck. The pipeline says which partitions it owns, which
``/readyz`` and ``newsflow status`` need. One process, one set of loops: these
are module-level, like the metrics they sit beside. Nothing here imports
prometheus_client: ``newsflow status`` reads this through ``health`` before the
daemon has chosen its metrics mode (``adapters.metric_files``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

_ticks: dict[str, float] = {}  # loop name -> monotonic time it last went round
_partitions: list[int] | None = None  # None: no pipeline runs in this process


def tick(loop: str) -> None:
    _ticks[loop] = time.monotonic()


def loop_ended(loop: str) -> None:
    _ticks.pop(loop, None)


def loop_ages() -> dict[str, float]:
    """Seconds since each running loop last ticked."""
    now = time.monotonic()
    return {name: round(now - at, 1) for name, at in sorted(_ticks.items())}


def assigned(partitions: Iterable[int] | None) -> None:
    """The raw-topic partitions this process's pipeline owns now (None: it stopped)."""
    global _partitions
    _partitions = None if partitions is None else sorted(partitions)


def partitions() -> list[int] | None:
    return None if _partitions is None else list(_partitions)
