"""The fault suite's recovery time: lag 0 after the fault, proven by traffic sent after it."""

from __future__ import annotations

from benchmarks.fault_harness import Tally, recovery_s


def received(at: float) -> Tally:
    return Tally(received=1, rejected=0, received_at=at, reason=None)


def test_recovery_waits_for_the_backlog_built_during_the_fault() -> None:
    acked = {"a": 1.0, "b": 2.0, "c": 11.0}
    seen = {"a": received(1.5), "b": received(14.0), "c": received(13.0)}
    assert recovery_s(acked, seen, fault_end=10.0) == 4.0


def test_nothing_pending_right_after_an_instant_fault_is_not_yet_recovery() -> None:
    acked = {"before": 1.0, "after": 5.0}
    seen = {"before": received(1.2), "after": received(9.0)}
    assert recovery_s(acked, seen, fault_end=3.0) == 6.0


def test_lag_zero_between_two_messages_counts() -> None:
    acked = {"a": 10.0, "b": 10.5, "c": 11.0}
    seen = {"a": received(10.1), "b": received(10.6), "c": received(11.1)}
    assert recovery_s(acked, seen, fault_end=9.0) == 1.1


def test_a_message_never_received_means_no_recovery() -> None:
    acked = {"a": 10.0, "b": 10.5}
    rejected = Tally(received=0, rejected=1, received_at=None, reason="cleaning_crashed")
    assert recovery_s(acked, {"a": received(10.1)}, fault_end=9.0) is None
    assert recovery_s(acked, {"a": received(10.1), "b": rejected}, fault_end=9.0) is None


def test_no_traffic_after_the_fault_proves_nothing() -> None:
    assert recovery_s({"a": 1.0}, {"a": received(1.1)}, fault_end=5.0) is None
