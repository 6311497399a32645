"""`cctv cameras list` at city scale: a 110,000-camera inventory read, filtered and paged in seconds.

The compacted topic is read in large batches keeping only the latest raw record per camera (no
per-record validation); filters on the camera id need no decoding, and only the cameras that can
still match a field filter, or land on the page shown, are decoded. Pages are keyset pages (camera ids
after a given one), so page N costs the same as page 1 and stays stable while cameras are added.
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)

from libs.kafka import high_watermark
from libs.settings import KafkaSettings
from libs.topics import CAMERAS

BATCH = 10_000


def read_to_end(
    settings: KafkaSettings, topic: str, handle: Callable[[Message], None], timeout_s: float = 120.0
) -> None:
    """Every committed record of `topic` up to the end that existed at start, in large batches."""
    consumer = Consumer(
        settings.client_config()
        | {
            "group.id": f"cctv-inventory-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"{topic}: {metadata.error.str()} (run `cctv topics create`)")
        ends = {p: high_watermark(consumer, topic, p) for p in metadata.partitions}
        remaining = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end within {timeout_s:.0f} s")
            for message in consumer.consume(BATCH, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {topic}: {error.str()}")
                    remaining.discard(message.partition())
                    continue
                handle(message)
                partition, offset = message.partition(), message.offset()
                if partition is not None and offset is not None and offset >= ends[partition] - 1:
                    remaining.discard(partition)
    finally:
        consumer.close()


def latest_records(settings: KafkaSettings, topic: str = CAMERAS, timeout_s: float = 120.0) -> dict[str, bytes]:
    """camera id → its latest record (tombstoned cameras left out), read to the end that existed at start."""
    latest: dict[str, bytes] = {}

    def keep(message: Message) -> None:
        key = (message.key() or b"").decode(errors="replace")
        value = message.value()
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value

    read_to_end(settings, topic, keep, timeout_s)
    return latest


@dataclass(frozen=True)
class CameraQuery:
    """Which cameras to list: id glob (e.g. 'gangnam-*'), site, tag, enabled state; one page of them."""

    match: str | None = None
    site: str | None = None
    tag: str | None = None
    enabled: bool | None = None
    after: str | None = None  # keyset paging: camera ids sorting after this one
    limit: int = 100  # 0 = all

    @property
    def needs_fields(self) -> bool:
        return self.site is not None or self.tag is not None or self.enabled is not None

    def accepts_id(self, camera_id: str) -> bool:
        return self.match is None or fnmatch.fnmatchcase(camera_id, self.match)

    def accepts(self, record: dict[str, Any]) -> bool:
        return (
            (self.site is None or record["site_id"] == self.site)
            and (self.tag is None or self.tag in record["tags"])
            and (self.enabled is None or record["enabled"] == self.enabled)
        )


@dataclass(frozen=True)
class CameraPage:
    cameras: list[dict[str, Any]]  # decoded CameraConfig records, by camera id
    matching: int  # cameras matching the filters in the whole inventory
    total: int  # cameras in the inventory
    next_after: str | None  # pass as `after` for the next page; None on the last page


def page(records: dict[str, bytes], decode: Callable[[bytes], dict[str, Any]], query: CameraQuery) -> CameraPage:
    """Filter and page the latest records; decodes only what a filter or the page needs."""
    ids: Iterable[str] = sorted(camera_id for camera_id in records if query.accepts_id(camera_id))
    if query.needs_fields:
        decoded = {camera_id: decode(records[camera_id]) for camera_id in ids}
        ids = [camera_id for camera_id, record in decoded.items() if query.accepts(record)]
    else:
        decoded = {}
        ids = list(ids)
    matching = len(ids)
    start = 0 if query.after is None else _first_after(ids, query.after)
    chosen = ids[start : start + query.limit] if query.limit else ids[start:]
    cameras = [decoded.get(camera_id) or decode(records[camera_id]) for camera_id in chosen]
    more = bool(query.limit) and start + query.limit < matching
    return CameraPage(cameras, matching, len(records), chosen[-1] if more and chosen else None)


def _first_after(sorted_ids: list[str], after: str) -> int:
    import bisect

    return bisect.bisect_right(sorted_ids, after)
