"""The fault suite's recovery measures: the fault's backlog received, and traffic sent after it flowing."""

from __future__ import annotations

from benchmarks.fault_harness import Tally, lag_back_s, recovery_s


def received(at: float) -> Tally:
    return Tally(received=1, rejected=0, received_at=at, reason=None)


def test_recovery_waits_for_the_backlog_the_fault_left() -> None:
    acked = {"a": 1.0, "b": 2.0, "c": 11.0}
    seen = {"a": received(1.5), "b": received(14.0), "c": received(13.0)}
    assert recovery_s(acked, seen, fault_end=10.0) == 4.0


def test_nothing_pending_right_after_an_instant_fault_is_not_yet_recovery() -> None:
    acked = {"before": 1.0, "after": 5.0, "later": 6.0}
    seen = {"before": received(1.2), "after": received(9.0), "later": received(9.5)}
    assert recovery_s(acked, seen, fault_end=3.0) == 6.0


def test_messages_still_in_flight_later_do_not_hold_recovery_back() -> None:
    acked = {"a": 9.5, "b": 10.5, "c": 11.0}
    seen = {"a": received(10.2), "b": received(10.7), "c": received(11.3)}
    assert recovery_s(acked, seen, fault_end=10.0) == 0.7


def test_a_message_never_received_means_no_recovery() -> None:
    acked = {"a": 10.0, "b": 10.5}
    rejected = Tally(received=0, rejected=1, received_at=None, reason="cleaning_crashed")
    assert recovery_s(acked, {"a": received(10.1)}, fault_end=9.0) is None
    assert recovery_s(acked, {"a": received(10.1), "b": rejected}, fault_end=9.0) is None


def test_no_traffic_after_the_fault_proves_nothing() -> None:
    assert recovery_s({"a": 1.0}, {"a": received(1.1)}, fault_end=5.0) is None


def test_lag_comes_back_to_what_was_in_flight_before_the_fault() -> None:
    acked = {f"pre{i}": 1.0 + i for i in range(4)} | {f"post{i}": 10.0 + i for i in range(4)}
    seen = {f"pre{i}": received(1.5 + i) for i in range(4)}  # one in flight at a time before
    seen |= {"post0": received(12.2), "post1": received(12.3), "post2": received(12.4), "post3": received(13.2)}
    assert lag_back_s(acked, seen, fault_start=5.0, fault_end=8.0, pre_s=5.0) == (1, 4.3)


def test_lag_back_down_only_for_a_moment_does_not_count() -> None:
    acked = {"pre": 1.0, "post0": 10.0, "post1": 10.5, "post2": 11.0, "post3": 11.5}
    seen = {"pre": received(1.5), "post0": received(10.1), "post1": received(13.0)}
    seen |= {"post2": received(13.1), "post3": received(13.2)}
    assert lag_back_s(acked, seen, fault_start=5.0, fault_end=8.0, pre_s=5.0) == (1, 5.1)


def test_lag_that_never_comes_back_down_is_none() -> None:
    acked = {"pre": 1.0, "post0": 10.0, "post1": 11.0}
    seen = {"pre": received(1.5)}
    assert lag_back_s(acked, seen, fault_start=5.0, fault_end=8.0, pre_s=5.0) == (1, None)
