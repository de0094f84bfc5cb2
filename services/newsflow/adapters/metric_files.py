"""Where the processes of one daemon keep their metric values, so one endpoint serves them all.

``newsflow run --workers N`` is N pipeline processes; Prometheus should scrape one
address whatever N is, and the counts of a child that died and was started again
should not fall back to zero. prometheus_client's multiprocess mode gives both:
every process writes its values to memory-mapped files in one directory, and the
parent's endpoint adds them up. The directory is wiped when a daemon starts (the
files of an earlier run would be counted again) and a child that exits is marked
dead, so its gauges drop out while its counters stay.

prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` once, when it is first
imported: ``prepare`` must run before anything imports it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from newsflow.settings import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsPortInUse(Exception):
    """The metrics endpoint cannot listen where it was told to (here, where the CLI can name it early)."""


def directory(state_dir: Path) -> Path:
    return (state_dir / "metrics").resolve()


def prepare(settings: Settings) -> Path | None:
    """Turn on multiprocess mode for this process and its children (metrics on only).

    The daemon's parent empties the directory; a child finds it named in the
    environment it inherited and keeps what is there.
    """
    if not settings.metrics_port:
        return None
    path = directory(settings.state_dir)
    if os.environ.get(ENV) != str(path):
        if "prometheus_client" in sys.modules:
            raise RuntimeError("metric_files.prepare must run before prometheus_client is imported")
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        os.environ[ENV] = str(path)
    return path


def in_use() -> bool:
    """Whether this process writes its metric values to the shared directory."""
    return bool(os.environ.get(ENV))
