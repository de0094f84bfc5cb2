"""Where a consumer resumes a partition, and which records it has already applied."""

from __future__ import annotations

import pytest

from newsflow.domain.offsets import ResumeDecision, already_applied, decide_resume


@pytest.mark.parametrize(("start_from", "expected"), [("earliest", 10), ("latest", 50)])
def test_without_a_stored_offset_the_start_from_setting_decides(start_from: str, expected: int) -> None:
    assert decide_resume(None, None, "c1", 10, 50, start_from) == ResumeDecision(expected)


def test_without_a_stored_offset_the_default_is_earliest() -> None:
    assert decide_resume(None, "c1", "c2", 10, 50) == ResumeDecision(10)


@pytest.mark.parametrize(
    ("stored", "log_start", "log_end", "expected"),
    [
        (70, 10, 50, ResumeDecision(10, "beyond_log_end")),
        (5, 10, 50, ResumeDecision(10, "before_log_start")),
        (30, 10, 50, ResumeDecision(30)),
        (50, 10, 50, ResumeDecision(50)),
        (10, 10, 50, ResumeDecision(10)),
        (0, 0, 0, ResumeDecision(0)),
    ],
    ids=["beyond_log_end", "before_log_start", "inside", "at_log_end", "at_log_start", "empty_log"],
)
def test_stored_offset_against_the_log_bounds(
    stored: int, log_start: int, log_end: int, expected: ResumeDecision
) -> None:
    assert decide_resume(stored, "c1", "c1", log_start, log_end) == expected


def test_a_changed_broker_restarts_at_the_log_start() -> None:
    assert decide_resume(30, "old", "new", 10, 50) == ResumeDecision(10, "broker_changed")


def test_a_changed_broker_wins_over_the_log_bounds() -> None:
    assert decide_resume(70, "old", "new", 10, 50) == ResumeDecision(10, "broker_changed")


@pytest.mark.parametrize(("stored_cluster", "cluster"), [(None, "c1"), ("c1", None), (None, None)])
def test_a_missing_cluster_id_is_not_a_change(stored_cluster: str | None, cluster: str | None) -> None:
    assert decide_resume(30, stored_cluster, cluster, 10, 50) == ResumeDecision(30)


def test_nothing_is_applied_without_a_stored_offset() -> None:
    assert already_applied(0, "c1", None, "c1") is False


@pytest.mark.parametrize(("offset", "applied"), [(9, True), (0, True), (10, False), (11, False)])
def test_records_below_the_stored_offset_are_applied(offset: int, applied: bool) -> None:
    assert already_applied(offset, "c1", 10, "c1") is applied


@pytest.mark.parametrize("offset", [0, 9, 10, 11])
def test_a_record_from_another_broker_is_never_applied(offset: int) -> None:
    assert already_applied(offset, "new", 10, "old") is False


@pytest.mark.parametrize(("cluster", "stored_cluster"), [(None, "c1"), ("c1", None), (None, None)])
def test_a_missing_cluster_id_compares_offsets_only(cluster: str | None, stored_cluster: str | None) -> None:
    assert already_applied(9, cluster, 10, stored_cluster) is True
    assert already_applied(10, cluster, 10, stored_cluster) is False
