"""The quick rows of the fault suite (`make faults`), through the same code, held to the same goal.

Each row starts `newsflow run --embedded` in its own temporary state directory, streams articles, causes
the fault for real and counts from ``newsflow.events``: nothing doubled, lost or rejected, the daemon up,
recovery within the goal. The row itself is the assertion message, so a failure shows what was measured.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.faults import RECOVERY_GOAL_S, Pace, run_row

QUICK = Pace(rate=10.0, pre_s=3.0, post_s=6.0, drain_s=30.0)


@pytest.mark.parametrize("fault", ["pg_restart", "sigkill_stage_worker"])
async def test_a_quick_fault_row_meets_the_goal(fault: str) -> None:
    row = await run_row(fault, QUICK)
    shown = json.dumps(row, indent=1)
    assert row["status"] == "ran", shown
    assert row["acked_after_fault"] > 0, f"nothing was published after the fault; the row proves nothing: {shown}"
    assert row["doubled"] == 0, shown
    assert row["lost"] == 0, shown
    assert row["rejected"] == 0, shown
    assert row["daemon_up"], shown
    assert row["recovery_s"] is not None and row["recovery_s"] <= RECOVERY_GOAL_S, shown
    assert row["goal_met"], shown
