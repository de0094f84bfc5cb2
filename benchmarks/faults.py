"""The fault suite (`make faults`): each fault caused for real, mid-stream, on `newsflow run --embedded`.

    python -m benchmarks.faults [--only pg_stop_30s,pg_restart] [--rate 20] [--pre 5] [--post 15] [--keep]

Per row: a fresh state directory in a temporary directory, the daemon as a subprocess, distinct articles
published at ``--rate`` per second through the broker it announced, before, during and after the fault
(``benchmarks.fault_rows``). Counted from ``newsflow.events`` (ArticleReceived / ArticleRejected per URL):

- ``doubled``: messages applied more than once;
- ``lost``: acknowledged by the broker, never applied, though the broker still holds them (for
  ``broker_kill_restart`` what the killed memory broker held is reported apart, ``old_broker_unapplied``);
- ``rejected``: valid articles rejected (every message published here is valid: a fault is never a reason);
- ``daemon_up``: the daemon (or, after ``sigkill_daemon``, its restarted self) still running at the end;
- ``recovery_s``: from the end of the fault until every message acknowledged so far (by the fault's end) and
  the first one acknowledged after it are received, from ack times and ``recorded_at``;
  ``first_commit_after_s``: to the first message received after the fault; ``lag_back_s``: until the
  messages in flight are back to ``lag_before_fault``, the most seen in the ``--pre`` seconds before it.

Goal per row: 0 doubled, 0 lost, 0 rejected, daemon up, recovery ≤ 10 s. One JSON object per row on stdout as it
finishes, then a summary line with every row and ``goal_met``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.fault_harness import Daemon, Publisher, Tally, applied, event_counts, lag_back_s, recovery_s
from benchmarks.fault_rows import FAULTS, Context, Fault, poison_available
from newsflow.settings import Settings

RECOVERY_GOAL_S = 10.0


@dataclass
class Pace:
    """How long a row streams around its fault, and how long it waits for the pipeline to catch up."""

    rate: float = 20.0
    pre_s: float = 5.0
    post_s: float = 15.0
    drain_s: float = 30.0
    warm_timeout_s: float = 120.0
    log_level: str = "warning"  # the daemon's NEWSFLOW_LOG_LEVEL (its log stays in the row's workdir)


def progress(msg: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def _sample(daemon: Daemon) -> None:
    while True:
        await asyncio.to_thread(daemon.sample)
        await asyncio.sleep(1.0)


async def _wait_applied(db_url: str, tag: str, urls: Sequence[str], timeout_s: float) -> bool:
    """Until every URL in ``urls`` (and at least one message) is applied: False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = await applied(db_url, tag)
        if seen and all(url in seen for url in urls):
            return True
        await asyncio.sleep(0.5)
    return False


CAUGHT_UP_S = 1.0


async def _caught_up(db_url: str, tag: str, publisher: Publisher, timeout_s: float) -> bool:
    """Until the backlog of the start-up (published while the stage workers warmed up) is received.

    Caught up: every message acked more than ``CAUGHT_UP_S`` ago is received. A fault caused before
    that would be measured together with the start-up's backlog.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cutoff = time.time() - CAUGHT_UP_S
        due = [url for url, at in publisher.acked.items() if at <= cutoff]
        seen = await applied(db_url, tag)
        if due and all(url in seen for url in due):
            return True
        await asyncio.sleep(0.5)
    return False


async def run_row(name: str, pace: Pace, keep: bool = False) -> dict[str, Any]:
    """One fault on a fresh daemon; the row as printed."""
    if name == "poison_batch" and not poison_available():
        return {"fault": name, "status": "not available", "why": "benchmarks/poison_batches.py is missing"}
    fault_fn, workers = FAULTS[name]
    workdir = Path(tempfile.mkdtemp(prefix=f"newsflow-fault-{name}-"))
    tag = f"{name}-{uuid.uuid4().hex[:6]}"
    daemon = Daemon(workdir, workers, {"NEWSFLOW_LOG_LEVEL": pace.log_level})
    wall0, cpu0 = time.monotonic(), time.process_time()
    sampler = asyncio.create_task(_sample(daemon))
    publisher: Publisher | None = None
    try:
        daemon.start()
        endpoints = await daemon.wait_endpoints()
        db_url = endpoints["database_url"]
        publisher = Publisher(endpoints["kafka_bootstrap"], tag, pace.rate)
        publisher.start()
        progress(f"{name}: daemon up (workers {workers}), waiting until it has caught up")
        if not await _caught_up(db_url, tag, publisher, pace.warm_timeout_s):
            raise TimeoutError(f"not caught up within {pace.warm_timeout_s:g} s of the start: no fault caused")
        await asyncio.sleep(pace.pre_s)
        progress(f"{name}: fault")
        fault = await fault_fn(Context(daemon, endpoints["kafka_bootstrap"], Settings().raw_topic))
        progress(f"{name}: fault over, {fault.notes}")
        await asyncio.sleep(pace.post_s)
        await publisher.stop()
        expected = _expected(publisher.acked, fault)
        await _wait_applied(db_url, tag, list(expected), pace.drain_s)
        seen = await applied(db_url, tag)
        daemon_up = daemon.alive()
        events = await event_counts(db_url) if seen else {}
        row = _row(name, publisher, fault, seen, expected, daemon_up)
        row["lag_before_fault"], row["lag_back_s"] = lag_back_s(expected, seen, fault.start, fault.end, pace.pre_s)
        row.update(events=events, starts=daemon.starts, services=daemon.services())
    except Exception as exc:  # noqa: BLE001  (a row that breaks is a row that failed; the suite goes on)
        row = {"fault": name, "status": "error", "error": f"{type(exc).__name__}: {exc}", "goal_met": False}
        row["daemon_log_tail"] = daemon.log_tail(1500)
    finally:
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.stop()
        sampler.cancel()
        with contextlib.suppress(Exception):  # cleaning up must not hide the row
            await daemon.stop()
    row.update(wall_s=round(time.monotonic() - wall0, 1), cpu_s={**daemon.cpu_s(), "harness": _cpu(cpu0)})
    if keep or not row.get("goal_met"):
        row["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return row


def _cpu(since: float) -> float:
    return round(time.process_time() - since, 2)


def _expected(acked: dict[str, float], fault: Fault) -> dict[str, float]:
    """The acked messages the broker still holds: after a broker was emptied, those acked since the fault."""
    if not fault.broker_emptied:
        return dict(acked)
    return {url: at for url, at in acked.items() if at >= fault.start}


def _row(
    name: str,
    publisher: Publisher,
    fault: Fault,
    seen: dict[str, Tally],
    expected: dict[str, float],
    daemon_up: bool,
) -> dict[str, Any]:
    acked = publisher.acked
    doubled = sorted(url for url, t in seen.items() if t.times > 1)
    lost = sorted(url for url in expected if url not in seen)
    rejected = sorted(url for url, t in seen.items() if t.rejected)
    after = [t.received_at for t in seen.values() if t.received_at is not None and t.received_at >= fault.end]
    acked_after = sum(1 for at in acked.values() if at >= fault.end)
    recovery = recovery_s(expected, seen, fault.end)
    row: dict[str, Any] = {
        "fault": name,
        "status": "ran",
        "published": publisher.attempted,
        "acked": len(acked),
        "publish_failed": len(publisher.failed),
        "acked_after_fault": acked_after,
        "applied": len(seen),
        "applied_unacked": sum(1 for url in seen if url not in acked),
        "doubled": len(doubled),
        "lost": len(lost),
        "rejected": len(rejected),
        "rejected_reasons": dict(Counter(str(seen[url].reason) for url in rejected)),
        "daemon_up": daemon_up,
        "fault_s": round(fault.end - fault.start, 2),
        "recovery_s": recovery,
        "first_commit_after_s": round(min(after) - fault.end, 2) if after else None,
        "notes": fault.notes,
        "examples": {"doubled": doubled[:3], "lost": lost[:3], "rejected": rejected[:3]},
    }
    if fault.broker_emptied:
        row["old_broker_unapplied"] = sum(1 for url in acked if url not in expected and url not in seen)
    row["goal_met"] = bool(
        fault.ok
        and not doubled
        and not lost
        and not rejected
        and daemon_up
        and acked_after > 0
        and recovery is not None
        and recovery <= RECOVERY_GOAL_S
    )
    return row


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help=f"comma-separated rows (default: all): {', '.join(FAULTS)}")
    p.add_argument("--rate", type=float, default=Pace.rate, help="articles published per second")
    p.add_argument("--pre", type=float, default=Pace.pre_s, help="seconds streamed before the fault, once warm")
    p.add_argument("--post", type=float, default=Pace.post_s, help="seconds streamed after the fault")
    p.add_argument("--drain", type=float, default=Pace.drain_s, help="seconds allowed to catch up after")
    p.add_argument("--daemon-log-level", default=Pace.log_level, help="the daemon's log level (info shows more)")
    p.add_argument("--keep", action="store_true", help="keep every row's state directory and daemon logs")
    args = p.parse_args(argv)
    unknown = set((args.only or "").split(",")) - set(FAULTS) - {""}
    if unknown:
        p.error(f"unknown rows: {', '.join(sorted(unknown))}")
    return args


async def suite(args: argparse.Namespace) -> list[dict[str, Any]]:
    names = [n for n in (args.only or "").split(",") if n] or list(FAULTS)
    pace = Pace(rate=args.rate, pre_s=args.pre, post_s=args.post, drain_s=args.drain, log_level=args.daemon_log_level)
    rows = []
    for name in names:  # one at a time: the rows share the machine's cores
        progress(f"{name}: starting")
        row = await run_row(name, pace, keep=args.keep)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    rows = asyncio.run(suite(parse_args(argv)))
    goal = {r["fault"]: r.get("goal_met") for r in rows}
    print(json.dumps({"summary": rows, "goal_met": goal, "all_goals_met": all(v is True for v in goal.values())}))


if __name__ == "__main__":
    main()
