"""The embedded servers' bookkeeping against real processes: handle pids that lie, two brokers on one log."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psutil

from newsflow.adapters.embedded import EmbeddedBroker, prune_handle_pids, running_brokers
from newsflow.app.embedded_stack import choose_broker


def tansu_pids(log: Path) -> list[int]:
    return [b.pid for b in running_brokers(log)]


def test_handle_pids_of_dead_processes_and_of_reused_pids_are_dropped(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    handles = tmp_path / ".handle_pids.json"
    written = psutil.Process().create_time()  # the file is dated when this process started
    later = subprocess.Popen(["sleep", "60"])  # alive, but created after the file was written: a reused pid
    try:
        assert psutil.Process(later.pid).create_time() > written + 1.0, "the test process is too young to tell"
        handles.write_text(json.dumps([os.getpid(), dead.pid, later.pid]))
        os.utime(handles, (written, written))
        assert sorted(prune_handle_pids(tmp_path)) == sorted([dead.pid, later.pid])
        assert json.loads(handles.read_text()) == [os.getpid()]
        assert prune_handle_pids(tmp_path) == []
    finally:
        later.kill()
        later.wait()


def test_of_two_brokers_on_the_state_log_the_recorded_one_is_kept_and_the_other_stopped(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    recorded, other = EmbeddedBroker(log_path=log), EmbeddedBroker(log_path=log)
    try:
        recorded.start()
        other.start()
        assert tansu_pids(log) == sorted([recorded.pid, other.pid])
        kept = choose_broker(log, {"pid": recorded.pid, "port": recorded.port, "cluster_id": recorded.cluster_id})
        assert (kept.pid, kept.port, kept.cluster_id) == (recorded.pid, recorded.port, recorded.cluster_id)
        assert recorded.alive() and not other.alive()
    finally:
        other.stop()
        recorded.stop()
