"""What /readyz, /healthz and `newsflow status` conclude from the processes' health snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from newsflow.app import health


def snap(
    services: dict[str, str],
    partitions: list[int] | None = None,
    loops: dict[str, float] | None = None,
    beat_ago: float = 0.0,
) -> dict[str, Any]:
    return {
        "pid": 1,
        "heartbeat_at": time.time() - beat_ago,
        "services": {
            name: {"state": state, "since": "", "outages": 0, "restarts": 0} for name, state in services.items()
        },
        "children": {},
        "loops": loops or {},
        "partitions": partitions,
    }


RUNNING = {"pipeline": "running", "clusterer": "running", "projector": "running"}


def test_ready_needs_partitions_once_a_pipeline_runs() -> None:
    ready = health.summary({"health.json": snap(RUNNING, [0, 1])}, True, True)
    assert ready["readiness"] == "ready" and all(ready["checks"].values())
    waiting = health.summary({"health.json": snap(RUNNING, [])}, True, True)
    assert waiting["readiness"] == "starting" and waiting["checks"]["partitions_assigned"] is False
    # Partitions owned by any process of the daemon will do; a daemon without a pipeline needs none.
    split = {"health.json": snap(RUNNING, []), "health.child-1.json": snap({"pipeline": "running"}, [0, 1, 2, 3])}
    assert health.summary(split, True, True)["readiness"] == "ready"
    readers = health.summary({"health.json": snap({"projector": "running"})}, True, True)
    assert readers["readiness"] == "ready" and readers["checks"]["partitions_assigned"] is None


def test_degraded_and_starting_say_which_check_fails() -> None:
    waiting = snap({**RUNNING, "pipeline": health.WAITING}, [0])
    degraded = health.summary({"health.json": waiting}, True, False)
    assert degraded["readiness"] == "degraded" and degraded["checks"]["postgres_reachable"] is False
    migrating = health.summary({"health.json": snap({"startup": "running"})}, True, True)
    assert migrating["readiness"] == "starting" and migrating["checks"]["migrations_applied"] is False
    assert "not yet: migrations applied" in "\n".join(health.render(migrating))
    gone = health.summary({"health.json": snap(RUNNING, [0], beat_ago=60)}, True, True)
    assert gone["readiness"] == "not running"


def test_a_loop_that_stopped_ticking_is_stuck_and_a_gone_process_is_not_judged() -> None:
    fresh = snap(RUNNING, [0], loops={"pipeline": 1.0, "projection.stories": 0.2})
    assert health.stuck_loops({"health.json": fresh}) == {}
    late = snap(RUNNING, [0], loops={"pipeline": health.ALIVE_WITHIN_S - 1, "projection.stories": 0.2}, beat_ago=5)
    assert health.stuck_loops({"health.child-1.json": late}) == {"health.child-1.json": ["pipeline"]}
    gone = snap(RUNNING, [0], loops={"pipeline": 500.0}, beat_ago=health.STALE_AFTER_S + 1)
    assert health.stuck_loops({"health.child-1.json": gone}) == {}


def test_the_metrics_directory_is_emptied_by_the_parent_and_kept_by_its_children(tmp_path: Path) -> None:
    """Multiprocess mode is chosen when prometheus_client is first imported: each case runs in a fresh process."""
    code = (
        "import os, sys; from newsflow.adapters import metric_files; from newsflow.settings import Settings;"
        "path = metric_files.prepare(Settings()); import prometheus_client.values as v;"
        "print(path, sorted(p.name for p in path.iterdir()) if path else None, v.ValueClass.__name__)"
    )
    env = {**os.environ, "NEWSFLOW_STATE_DIR": str(tmp_path), "NEWSFLOW_METRICS_PORT": "9464"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    metrics_dir = (tmp_path / "metrics").resolve()
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"from an earlier run")

    def run(extra: dict[str, str]) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert run({}) == f"{metrics_dir} [] MmapedValue", "the parent starts from an empty directory"
    (metrics_dir / "counter_2.db").write_bytes(b"a live sibling's")
    child = run({"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    assert child == f"{metrics_dir} ['counter_2.db'] MmapedValue", "a child keeps what the others wrote"
    assert run({"NEWSFLOW_METRICS_PORT": "0"}).endswith("None None MutexValue"), "metrics off: in memory only"


def test_nothing_the_command_line_reads_first_imports_prometheus_client() -> None:
    """`newsflow run` chooses the metrics mode before prometheus_client is imported; the parser and health must not."""
    code = (
        "import sys; from newsflow.app import cli, health; cli.parser();"
        "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
