"""Where a consumer resumes a partition, given what PostgreSQL stored and what the broker holds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResumeDecision:
    offset: int
    reset_reason: str | None = None


def decide_resume(
    stored_offset: int | None,
    stored_cluster_id: str | None,
    cluster_id: str | None,
    log_start: int,
    log_end: int,
    start_from: str = "earliest",
) -> ResumeDecision:
    """Resume at the stored offset unless it cannot belong to the log the broker now holds.

    * no stored offset: ``start_from`` (earliest or latest);
    * broker identity changed (a memory broker restarted empty): everything in the log is new, start at its beginning;
    * stored offset past the log end (topic recreated, broker emptied under the same id): start at the beginning;
    * stored offset before the log start (retention deleted records we never read): start at the log start.
    """
    if stored_offset is None:
        return ResumeDecision(log_start if start_from == "earliest" else log_end)
    if stored_cluster_id and cluster_id and stored_cluster_id != cluster_id:
        return ResumeDecision(log_start, "broker_changed")
    if stored_offset > log_end:
        return ResumeDecision(log_start, "beyond_log_end")
    if stored_offset < log_start:
        return ResumeDecision(log_start, "before_log_start")
    return ResumeDecision(stored_offset)


def already_applied(
    offset: int, cluster_id: str | None, stored_offset: int | None, stored_cluster_id: str | None
) -> bool:
    """True when the stored offset says this record's effect is in the log (same broker, offset below it).

    A record from another broker incarnation than the stored offset's is never
    taken as applied: its offsets count a different log.
    """
    if stored_offset is None:
        return False
    if stored_cluster_id is not None and cluster_id is not None and stored_cluster_id != cluster_id:
        return False
    return offset < stored_offset
