"""`newsflow stories follow`: print the story feed as it arrives, one line per record.

A plain consumer of every partition of the topic, without a consumer group (no
offsets committed anywhere): it starts at the end, or at the beginning with
``--from-beginning``. Records published again after a restart of the feed reader
carry an id already seen and are dropped here, as any consumer of the feed should.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TextIO

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from newsflow.domain import story_feed
from newsflow.settings import Settings

SEEN_IDS = 100_000  # record ids remembered for dropping repeats; a repeat comes within one page of its first


class SeenIds:
    """The latest ``size`` record ids: has this one come before?"""

    def __init__(self, size: int = SEEN_IDS) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def repeat(self, record_id: str) -> bool:
        if record_id in self._ids:
            return True
        self._ids[record_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False


def line_for(value: bytes, as_json: bool) -> tuple[str | None, str]:
    """(record id, the line to print) for one Kafka value; a value this version cannot read is printed as is."""
    text = value.decode("utf-8", errors="replace")
    try:
        record = story_feed.FEED_RECORD.validate_json(value)
    except ValidationError:
        return None, text
    return str(record.record_id), (text if as_json else story_feed.render(record))


async def follow(settings: Settings, out: TextIO, *, from_beginning: bool, as_json: bool, count: int | None) -> int:
    """Print records until interrupted (or ``count`` of them); returns how many were printed."""
    consumer = AIOKafkaConsumer(
        settings.stories_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        metadata_max_age_ms=5000,  # a topic the feed creates after this starts is found within seconds
    )
    await consumer.start()
    seen = SeenIds()
    printed = 0
    try:
        async for message in consumer:
            record_id, line = line_for(message.value or b"", as_json)
            if record_id is not None and seen.repeat(record_id):
                continue
            print(line, file=out, flush=True)
            printed += 1
            if count is not None and printed >= count:
                break
    finally:
        await consumer.stop()
    return printed
