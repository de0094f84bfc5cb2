"""The quick rows of the fault suite (`make faults`), through the same code.

Each row starts `newsflow run --embedded` in its own temporary state directory, streams articles, causes
the fault for real and counts from ``newsflow.events``: nothing doubled, lost or rejected, the daemon up,
and it recovered. How fast it recovered is a measurement (`make faults` reports it against the 10 s goal),
not a test: on a shared machine a wall-clock bound fails for reasons that are not newsflow's. The row
itself is the assertion message, so a failure shows what was measured.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.faults import Pace, run_row

QUICK = Pace(rate=10.0, pre_s=3.0, post_s=6.0, drain_s=30.0)


@pytest.mark.parametrize("fault", ["pg_restart", "sigkill_stage_worker"])
async def test_a_quick_fault_row_loses_doubles_and_rejects_nothing(fault: str) -> None:
    row = await run_row(fault, QUICK)
    shown = json.dumps(row, indent=1)
    assert row["status"] == "ran", shown
    assert row["acked_after_fault"] > 0, f"nothing was published after the fault; the row proves nothing: {shown}"
    assert row["doubled"] == 0, shown
    assert row["lost"] == 0, shown
    assert row["rejected"] == 0, shown
    assert row["daemon_up"], shown
    assert row["recovery_s"] is not None, f"some acked message never arrived: {shown}"
    if fault == "pg_restart":
        # A restart between two commits can pass the pipeline by (the pool replaces closed connections);
        # test_outages.py stops the database while the pipeline has records to commit.
        assert row["services"]["pipeline"]["restarts"] == 0, f"the pipeline left its consumer group: {shown}"
