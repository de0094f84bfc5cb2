"""Finding a damaged batch in a partition's raw log, and the offsets it spans, without a broker."""

from __future__ import annotations

import struct

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.record import MemoryRecords

from benchmarks.poison_batches import build_batch, damage
from newsflow.domain.contract import RejectionReason
from newsflow.ingest import undecodable

TP = TopicPartition("raw", 3)


def at(base: int, batch: bytes | bytearray) -> bytes:
    """``batch`` with the base offset a broker would have given it (the field is outside the CRC)."""
    placed = bytearray(batch)
    struct.pack_into(">q", placed, 0, base)
    return bytes(placed)


def good(base: int, n: int) -> bytes:
    return at(base, build_batch([f"article {base + i}".encode() for i in range(n)]))


def poison(kind: RejectionReason, base: int, n: int = 3) -> bytes:
    values = [b"x" * 40 for _ in range(n)]
    made = {
        "crc_mismatch": lambda: damage("crc_mismatch", values),
        "unknown_codec": lambda: damage("unknown_codec", values),
        "undecodable_batch": lambda: damage("corrupt_compressed", values, codec="gzip"),
    }
    return at(base, made[kind]())


@pytest.mark.parametrize("reason", ["crc_mismatch", "unknown_codec", "undecodable_batch"])
def test_the_records_before_a_damaged_batch_are_kept_and_the_next_batch_bounds_it(
    reason: RejectionReason,
) -> None:
    bad = poison(reason, 2)
    located = undecodable.scan(good(0, 2) + bad + good(5, 1), TP, 0, 6, "c1")
    assert [(r.offset, r.value) for r in located.good] == [(0, b"article 0"), (1, b"article 1")]
    assert {(r.topic, r.partition, r.cluster_id) for r in located.good} == {("raw", 3, "c1")}
    assert located.poison is not None
    assert (located.poison.first, located.poison.end, located.poison.range_from) == (2, 5, "next_batch")
    assert (located.poison.reason, located.poison.data) == (reason, bad)


def test_a_damaged_last_batch_ends_where_its_header_says_if_that_is_inside_the_log() -> None:
    located = undecodable.scan(poison("crc_mismatch", 7), TP, 7, 10, None)
    assert located.poison is not None
    assert (located.poison.first, located.poison.end, located.poison.range_from) == (7, 10, "batch_header")


def test_a_header_that_claims_offsets_past_the_log_end_costs_one_offset_not_good_records() -> None:
    located = undecodable.scan(poison("crc_mismatch", 7, n=50), TP, 7, 10, None)
    assert located.poison is not None
    assert (located.poison.first, located.poison.end, located.poison.range_from) == (7, 8, "single_offset")


def test_unreadable_framing_skips_one_offset_and_keeps_no_bytes() -> None:
    broken = struct.pack(">qi", 4, 3) + b"abc"
    located = undecodable.scan(good(0, 4) + broken, TP, 2, 9, None)
    assert [r.offset for r in located.good] == [2, 3], "records before the fetch offset are not the worker's"
    assert located.poison == undecodable.Poison(
        4, 5, None, "undecodable_batch", "unreadable batch framing", "single_offset"
    )


def test_a_log_that_decodes_has_no_poison_and_a_batch_cut_off_by_the_read_is_left_for_later() -> None:
    data = good(0, 2) + good(2, 2)
    located = undecodable.scan(data + good(4, 3)[:30], TP, 0, 7, None)
    assert [r.offset for r in located.good] == [0, 1, 2, 3]
    assert located.poison is None


@pytest.mark.parametrize("reason", ["crc_mismatch", "unknown_codec", "undecodable_batch"])
def test_the_failed_partition_is_read_from_aiokafkas_own_decoding_error(reason: RejectionReason) -> None:
    """Pins what the worker relies on: aiokafka raises out of its record iterator, whose frame names the partition."""
    records = PartitionRecords(
        TP, MemoryRecords(good(0, 1) + poison(reason, 1)), [], 0, None, None, True, READ_UNCOMMITTED
    )
    with pytest.raises(Exception) as raised:
        list(records)
    assert undecodable.failed_partition(raised.value) == TP
    assert undecodable.failed_partition(RuntimeError("not from decoding")) is None
