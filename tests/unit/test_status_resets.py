"""`newsflow status` after an offsets reset: lag 0 on the new log is shown beside what the lost log held."""

from __future__ import annotations

from typing import Any

from newsflow.app import health, status


def reset(reason: str, applied: int, at: str, log_start: int = 0) -> dict[str, Any]:
    return {
        "at": at,
        "reason": reason,
        "applied_from_lost_log": applied,
        "lost_cluster_id": "old" if reason == "broker_changed" else "new",
        "cluster_id": "new",
        "log_start": log_start,
        "new_offset": log_start,
    }


def partition(stored: int, end: int, reset_: dict[str, Any] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"stored_offset": stored, "log_end": end, "lag": end - stored}
    if reset_ is not None:
        row["reset"] = reset_
    return row


def status_of(lag: dict[str, Any]) -> dict[str, Any]:
    return {
        "database_reachable": True,
        "daemon": health.summary({}, broker_reachable=True, database_reachable=True),
        "topic": "raw",
        "consumer_group": "g",
        "broker_reachable": True,
        "consumer_lag": lag,
        "total_lag": sum(v["lag"] for v in lag.values()),
        "offsets_resets": status.reset_summaries(lag),
        "log_head_position": 0,
        "readers": {},
        "events_by_type": {},
        "rejected": 0,
        "stories": 0,
        "clusterer_snapshot": None,
    }


def test_a_replaced_broker_shows_the_offsets_applied_from_the_lost_log_per_partition_and_in_all() -> None:
    lag = {
        "0": partition(3, 3, reset("broker_changed", 300, "2026-12-03T10:00:02+00:00")),
        "1": partition(0, 0, reset("broker_changed", 317, "2026-12-03T10:00:01+00:00")),
        "2": partition(5, 5),
    }
    [summary] = status.reset_summaries(lag)
    assert summary["applied_from_lost_log"] == 617 and summary["partitions"] == {"0": 300, "1": 317}
    assert summary["at"] == "2026-12-03T10:00:01+00:00" and summary["lost_cluster_id"] == "old"
    text = status.render(status_of(lag))
    assert (
        "broker replaced at 2026-12-03 10:00:01 UTC: 617 offsets applied from the old log"
        " (by partition 0: 300, 1: 317); what it held beyond was lost"
    ) in text
    lines = text.splitlines()
    header = lines.index("partition  stored_offset  log_end  lag")
    rows = {line.split()[0]: line for line in lines[header + 1 : header + 4]}
    assert "after a reset" in rows["0"] and "after a reset" in rows["1"] and "after a reset" not in rows["2"]


def test_records_removed_by_retention_are_counted_as_never_applied() -> None:
    lag = {"0": partition(40, 40, reset("before_log_start", 10, "2026-12-03T10:00:00+00:00", log_start=25))}
    [summary] = status.reset_summaries(lag)
    assert summary["never_read"] == {"0": 15}
    assert "records removed before they were read at 2026-12-03 10:00:00 UTC: 15 records never applied" in (
        status.render(status_of(lag))
    )


def test_resets_of_different_causes_are_reported_apart_oldest_first() -> None:
    lag = {
        "0": partition(1, 1, reset("beyond_log_end", 8, "2026-12-03T11:00:00+00:00")),
        "1": partition(1, 1, reset("broker_changed", 4, "2026-12-03T10:00:00+00:00")),
    }
    assert [s["reason"] for s in status.reset_summaries(lag)] == ["broker_changed", "beyond_log_end"]


def test_without_resets_nothing_is_added() -> None:
    lag = {"0": partition(2, 2)}
    assert status.reset_summaries(lag) == []
    assert "reset" not in status.render(status_of(lag))
