"""The daemon's Prometheus metrics: the metric objects, and one small function per fact the services report.

The services call these at the points where they already log the same fact
(``batch.committed``, ``daemon.pipeline_process_exited``, ``stage.pool_replaced``,
...); what is measured from outside the loops (lag, reader positions,
connectivity, live stories) is set by ``probe``. Names follow Prometheus
conventions: ``newsflow_`` first, ``_total`` for counters, ``_seconds`` for times.

Gauges name how the values of several processes combine in multiprocess mode
(``metric_files``): ``livesum`` adds the live processes' values; the probe's gauges
are set by the daemon's parent alone (``livemostrecent``).
"""

from __future__ import annotations

import platform
import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from newsflow.domain.contract import RejectionReason
from newsflow.domain.events import ArticleReceived, NewEvent, registry
from newsflow.domain.stages import Accepted, Outcome, Rejected

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

BUILD_INFO = Gauge(
    "newsflow_build_info", "Always 1; the labels say which build runs.", ["version", "python"], multiprocess_mode="max"
)
CONSUMED = Counter(
    "newsflow_messages_consumed_total", "Kafka records fetched by the pipeline (fetched again after an outage too)."
)
APPLIED = Counter(
    "newsflow_messages_applied_total", "Records appended as an article version (a first version or a revision)."
)
SKIPPED = Counter(
    "newsflow_messages_skipped_total",
    "Records dropped as redelivered: offset already applied, or the same content again for a URL.",
    ["reason"],
)
REJECTED = Counter("newsflow_messages_rejected_total", "Records appended as ArticleRejected, by reason.", ["reason"])
DEAD_LETTERS = Counter(
    "newsflow_dead_letters_sent_total", "Records sent to the dead-letter topic, by reason.", ["reason"]
)
STAGE_SECONDS = Histogram(
    "newsflow_stage_seconds",
    "Wall time of one record in a stage; commit: from its stages done to its transaction committed.",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
APPEND_SECONDS = Histogram(
    "newsflow_append_transaction_seconds",
    "Wall time of one pipeline append transaction, append lock to COMMIT.",
    buckets=STAGE_BUCKETS,
)
EVENTS_APPENDED = Counter("newsflow_events_appended_total", "Events appended to newsflow.events, by type.", ["type"])
DECISIONS = Counter(
    "newsflow_story_decisions_total", "Story decisions appended by the clusterer: started, assigned, merged.", ["kind"]
)
PARTITIONS_ASSIGNED = Gauge(
    "newsflow_partitions_assigned", "Raw-topic partitions the pipeline processes own.", multiprocess_mode="livesum"
)
CHILD_RESTARTS = Counter("newsflow_child_restarts_total", "Child pipeline processes started again after they exited.")
POOL_REPLACEMENTS = Counter(
    "newsflow_stage_pool_replacements_total", "Stage-worker pools replaced after pebble gave up on one."
)
OUTAGES = Counter("newsflow_database_outages_total", "Database outages a service waited out.", ["service"])

# Set by ``probe`` in the daemon's parent, from PostgreSQL and the broker.
CONSUMER_LAG = Gauge(
    "newsflow_consumer_lag",
    "Records in the raw topic not yet applied: log end minus the offset stored in PostgreSQL.",
    ["partition"],
    multiprocess_mode="livemostrecent",
)
LOG_HEAD = Gauge(
    "newsflow_log_head_position", "Position of the last event in newsflow.events.", multiprocess_mode="livemostrecent"
)
READER_POSITION = Gauge(
    "newsflow_reader_position", "Checkpoint of each log reader.", ["reader"], multiprocess_mode="livemostrecent"
)
READER_LAG = Gauge(
    "newsflow_reader_lag_events",
    "Events a log reader has still to apply: log head minus its checkpoint.",
    ["reader"],
    multiprocess_mode="livemostrecent",
)
STORIES = Gauge("newsflow_stories", "Live stories (projection.stories).", multiprocess_mode="livemostrecent")
POSTGRES_UP = Gauge(
    "newsflow_postgres_up", "1 when PostgreSQL answered the last probe.", multiprocess_mode="livemostrecent"
)
BROKER_UP = Gauge(
    "newsflow_broker_up", "1 when the broker answered the last probe.", multiprocess_mode="livemostrecent"
)
PROBE_SECONDS = Gauge(
    "newsflow_probe_timestamp_seconds", "When the last probe finished (Unix time).", multiprocess_mode="livemostrecent"
)

DECISION_KINDS = {"StoryStarted": "started", "ArticleAssignedToStory": "assigned", "StoriesMerged": "merged"}
STAGES = ("decode", "clean", "entities", "commit")
SKIP_REASONS = ("already_applied", "same_content")


def initialize() -> None:
    """Every known label value at 0 from the start: a series born at its first increment hides that increment
    from ``rate()`` and ``increase()``, and a panel would show nothing where it should show 1."""
    for reason in get_args(RejectionReason):
        REJECTED.labels(reason)
        DEAD_LETTERS.labels(reason)
    for reason in SKIP_REASONS:
        SKIPPED.labels(reason)
    for stage in STAGES:
        STAGE_SECONDS.labels(stage)
    for kind in DECISION_KINDS.values():
        DECISIONS.labels(kind)
    for event_type in registry.types():
        EVENTS_APPENDED.labels(event_type)


def service_seen(service: str) -> None:
    """A service reported its state: its outage count exists from now on, at 0."""
    OUTAGES.labels(service)


def build_info() -> None:
    BUILD_INFO.labels(version=metadata.version("newsflow"), python=platform.python_version()).set(1)


def consumed(records: int) -> None:
    CONSUMED.inc(records)


def dead_letters_sent(rejected: Iterable[Rejected]) -> None:
    for reason, n in Tally(r.rejection.reason for r in rejected).items():
        DEAD_LETTERS.labels(reason).inc(n)


def batch_committed(
    outcomes: Sequence[Outcome],
    applied: Sequence[Outcome],
    events: Sequence[NewEvent],
    timings: Sequence[Mapping[str, float]],
    transaction_s: float,
) -> None:
    """One pipeline transaction committed: ``outcomes`` taken, ``applied`` not already applied, ``events`` appended.

    Each record version appended has one ``ArticleReceived``; an accepted record
    without one was the same content again.
    """
    versions = sum(e.type == ArticleReceived.event_type for e in events)
    accepted = sum(isinstance(o, Accepted) for o in applied)
    APPLIED.inc(versions)
    SKIPPED.labels("already_applied").inc(len(outcomes) - len(applied))
    SKIPPED.labels("same_content").inc(accepted - versions)
    for reason, n in Tally(o.rejection.reason for o in applied if isinstance(o, Rejected)).items():
        REJECTED.labels(reason).inc(n)
    events_appended(events)
    APPEND_SECONDS.observe(transaction_s)
    now = time.perf_counter()
    for t in timings:
        for stage in STAGES[:3]:
            if stage in t:
                STAGE_SECONDS.labels(stage).observe(t[stage] / 1000)
        if "ready_at" in t:
            STAGE_SECONDS.labels("commit").observe(max(0.0, now - t["ready_at"]))


def events_appended(events: Iterable[NewEvent]) -> None:
    for event_type, n in Tally(e.type for e in events).items():
        EVENTS_APPENDED.labels(event_type).inc(n)
        if event_type in DECISION_KINDS:
            DECISIONS.labels(DECISION_KINDS[event_type]).inc(n)


def partitions_assigned(count: int) -> None:
    PARTITIONS_ASSIGNED.set(count)


def child_restarted(pid: int | None) -> None:
    """A child pipeline process exited and is started again: count it, and let its gauges go."""
    CHILD_RESTARTS.inc()
    if pid is not None:
        process_gone(pid)


def process_gone(pid: int) -> None:
    from newsflow.adapters import metric_files

    if metric_files.in_use():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def pool_replaced() -> None:
    POOL_REPLACEMENTS.inc()


def outage(service: str) -> None:
    OUTAGES.labels(service).inc()
