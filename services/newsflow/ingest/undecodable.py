"""A record batch the consumer cannot decode: find it, say what it spans, and get past it.

aiokafka 0.14 decodes a fetched partition lazily, inside ``getmany()``: a batch
with a CRC mismatch raises ``CorruptRecordException``, a compressed batch that does
not decompress raises the codec's own error (``gzip.BadGzipFile``,
``cramjam.DecompressionError``), an unknown codec ``UnsupportedCodecError``. The
error leaves ``getmany()``, the partition's position stays before the batch (so
every later fetch fails the same way), the records of that fetch before the batch
are never returned, and partitions that call had already drained are returned to
nobody although their positions moved on.

So on such an error the worker (under the positioning lock): rewinds every
partition to the next offset it expects (nothing drained and dropped is lost);
reads the failing partition's log from that offset itself, with a raw fetch;
decodes it batch by batch with aiokafka's own batch classes; hands the good records
before the damaged batch to the pipeline as if fetched; and turns the damaged
batch into one ``Rejected`` outcome whose record ends at the batch's last offset,
so the commit moves the stored offset past it with the rejection event. Its bytes
go to the dead-letter topic like any rejected record's.

The offset range. The base offset and length are the broker's framing and not
under the CRC; the last offset delta is, so in a batch whose CRC fails it cannot
be trusted. The end is therefore taken from the next batch's base offset in the
same read when there is one (``next_batch``), else from the header's delta when it
ends inside the log (``batch_header``), else only the first offset is skipped
(``single_offset``: fetching from inside a batch returns the batch again, so an
untrustworthy header costs more rejections, never a good record). A batch whose
framing is unreadable spans one offset, and no bytes of it exist.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.legacy_records import LegacyRecordBatch

from newsflow.domain import stages
from newsflow.domain.contract import Rejection, RejectionReason
from newsflow.domain.stages import Rejected, SourceRecord

READ_MAX_BYTES = 64 * 1024 * 1024
_FRAME = struct.Struct(">qi")  # BaseOffset, Length (of everything after these 12 bytes)
_MAGIC_AT = 16
_V2_HEADER = 61
_MIN_LENGTH = 14  # after the 12 framing bytes: the smallest legacy (v0) message header
_KNOWN_CODECS = range(5)
_FETCHER_MODULE = "aiokafka.consumer.fetcher"


@dataclass(frozen=True)
class Poison:
    """A damaged batch: offsets ``first`` to ``end - 1``, its bytes when its framing could be read."""

    first: int
    end: int
    data: bytes | None
    reason: RejectionReason
    error: str
    range_from: str


@dataclass(frozen=True)
class Located:
    """What a raw read from the expected offset found: the good records before the damage, and the damage."""

    good: list[SourceRecord]
    poison: Poison | None


def failed_partition(exc: BaseException) -> TopicPartition | None:
    """The partition whose records were being decoded when ``exc`` was raised, or None if it is another error.

    The decoding generator of aiokafka's fetcher holds the partition in its local
    ``tp``; an error raised while unpacking a fetch passes through that frame.
    """
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_unpack_records" and frame.f_globals.get("__name__") == _FETCHER_MODULE:
            tp = frame.f_locals.get("tp")
            if isinstance(tp, TopicPartition):
                return tp
        tb = tb.tb_next
    return None


def rewind(consumer: AIOKafkaConsumer, topic: str, expected: dict[int, int]) -> None:
    """Seek every assigned partition of ``topic`` back to the next offset this worker expects there."""
    for tp in consumer.assignment():
        if tp.topic == topic and tp.partition in expected:
            consumer.seek(tp, expected[tp.partition])


async def read_log(bootstrap: str, tp: TopicPartition, offset: int) -> tuple[bytes, int]:
    """The partition's raw record batches from ``offset`` (up to 64 MiB), and its high watermark."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.add_topic(tp.topic)
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader == -1:
            raise RuntimeError(f"no leader for {tp.topic}[{tp.partition}]")
        request = FetchRequest(100, 1, READ_MAX_BYTES, 0, [(tp.topic, [(tp.partition, offset, READ_MAX_BYTES)])])
        response = await client.send(leader, request)
        for _, partitions in response.topics:
            for partition, error_code, highwater, *rest in partitions:
                if partition == tp.partition:
                    if error_code:
                        raise for_code(error_code)(f"raw read of {tp.topic}[{tp.partition}] at {offset}")
                    return bytes(rest[-1] or b""), int(highwater)
        raise RuntimeError(f"the broker returned no data for {tp.topic}[{tp.partition}]")
    finally:
        await client.close()


Decoded = list[tuple[int, bytes | None, bytes | None, int | None]]  # offset, key, value, timestamp


class _Damaged(Exception):
    def __init__(self, reason: RejectionReason, error: str, claimed_end: int | None) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error
        self.claimed_end = claimed_end


def _decode(batch: bytes) -> tuple[Decoded, int]:
    """A whole batch's records and the offset after it, decoded as aiokafka's consumer does; raises ``_Damaged``."""
    magic = batch[_MAGIC_AT]
    if magic > 2:
        raise _Damaged("undecodable_batch", f"unknown record batch magic {magic}", None)
    if magic == 2:
        if len(batch) < _V2_HEADER:
            raise _Damaged("undecodable_batch", f"a {len(batch)}-byte batch is shorter than its header", None)
        v2 = DefaultRecordBatch(batch)
        if not v2.validate_crc():
            raise _Damaged("crc_mismatch", "CRC mismatch", v2.next_offset)
        if v2.compression_type not in _KNOWN_CODECS:
            raise _Damaged("unknown_codec", f"unknown compression codec id {v2.compression_type}", v2.next_offset)
        try:
            records = [] if v2.is_control_batch else [(r.offset, r.key, r.value, r.timestamp) for r in v2]
        except Exception as exc:  # each codec raises its own error type
            raise _Damaged("undecodable_batch", f"{type(exc).__name__}: {exc}", v2.next_offset) from exc
        return records, v2.next_offset
    legacy = LegacyRecordBatch(batch, magic)
    if not legacy.validate_crc():
        raise _Damaged("crc_mismatch", "CRC mismatch", None)
    try:
        records = [(r.offset, r.key, r.value, r.timestamp) for r in legacy]
    except Exception as exc:
        raise _Damaged("undecodable_batch", f"{type(exc).__name__}: {exc}", None) from exc
    return records, legacy.next_offset


def scan(data: bytes, tp: TopicPartition, start: int, highwater: int, cluster_id: str | None) -> Located:
    """Decode ``data`` (a fetch of ``tp`` from ``start``) up to and including its first damaged batch."""
    good: list[SourceRecord] = []
    cursor = start  # the offset after everything decoded so far
    pos = 0
    while len(data) - pos >= _FRAME.size:
        base, length = _FRAME.unpack_from(data, pos)
        after = pos + _FRAME.size + length
        if length < _MIN_LENGTH:
            return Located(
                good, Poison(cursor, cursor + 1, None, "undecodable_batch", "unreadable batch framing", "single_offset")
            )
        if after > len(data):
            break  # the read ended inside a batch: everything before it decoded
        try:
            records, batch_end = _decode(data[pos:after])
        except _Damaged as damaged:
            first = base if cursor <= base < highwater else cursor
            return Located(good, _poison(data, pos, after, first, highwater, damaged))
        good += [
            SourceRecord(tp.topic, tp.partition, offset, key, value, ts, cluster_id)
            for offset, key, value, ts in records
            if offset >= cursor
        ]
        cursor = max(cursor, batch_end)
        pos = after
    return Located(good, None)


def _poison(data: bytes, pos: int, after: int, first: int, highwater: int, damaged: _Damaged) -> Poison:
    following = _FRAME.unpack_from(data, after)[0] if len(data) - after >= _FRAME.size else None
    if following is not None and following > first:
        end, range_from = following, "next_batch"
    elif damaged.claimed_end is not None and first < damaged.claimed_end <= highwater:
        end, range_from = damaged.claimed_end, "batch_header"
    else:
        end, range_from = first + 1, "single_offset"
    return Poison(first, end, data[pos:after], damaged.reason, damaged.error, range_from)


async def locate(bootstrap: str, tp: TopicPartition, start: int, cluster_id: str | None) -> Located:
    data, highwater = await read_log(bootstrap, tp, start)
    return scan(data, tp, start, highwater, cluster_id)


def rejected(
    tp: TopicPartition, poison: Poison, client_error: BaseException, cluster_id: str | None, dlq: str
) -> Rejected:
    """The outcome that rejects the batch: its record ends at the batch's last offset, so the commit moves past it."""
    last = poison.end - 1
    kept = "its bytes are the dead letter" if poison.data is not None else "no bytes of it exist"
    detail = (
        f"record batch {tp.topic}[{tp.partition}] offsets {poison.first}..{last} cannot be decoded: {poison.error}"
        f" (range from {poison.range_from}; {kept}); the consumer raised {type(client_error).__name__}: {client_error}"
    )
    record = SourceRecord(tp.topic, tp.partition, last, None, poison.data, None, cluster_id)
    outcome = stages.reject(record, Rejection(poison.reason, detail), dlq)
    causation = {**record.causation(), "offset": poison.first, "last_offset": last}
    event = replace(outcome.event, metadata={**outcome.event.metadata, "causation": causation})
    return replace(outcome, event=event)
