"""Reading a compacted topic to its end: the inventory follower, ingest's camera assignment and
`cctv status` all rebuild "latest record per key" from the start of a log and must know when they hold
the whole of it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from libs.kafka.clients import high_watermark, make_reader, topic_partitions
from libs.serde import AvroSerde, SerdeError
from libs.settings import KafkaSettings

log = logging.getLogger(__name__)


class CatchUp:
    """Which partitions of one topic have been read up to the end they had when they were added.

    Position, not the last offset seen, decides: transaction markers and compacted-away records occupy
    offsets too, so the last record may sit well before the end."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic
        self._ends: dict[int, int] = {}
        self._empty: list[int] = []

    def add(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            end = high_watermark(self.consumer, self.topic, partition)
            if end > 0:
                self._ends[partition] = end
            else:
                self._empty.append(partition)

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._ends.pop(partition, None)
            if partition in self._empty:
                self._empty.remove(partition)

    def is_pending(self, partition: int) -> bool:
        return partition in self._ends or partition in self._empty

    @property
    def pending(self) -> bool:
        """Some partition still has records to read before its end (empty partitions never do)."""
        return bool(self._ends)

    def reached(self) -> list[int]:
        """Partitions that reached their end since the last call (each reported once)."""
        done, self._empty = self._empty, []
        if self._ends:
            positions = self.consumer.position([TopicPartition(self.topic, p) for p in self._ends])
            done += [tp.partition for tp in positions if tp.offset >= self._ends[tp.partition]]
            for partition in done:
                self._ends.pop(partition, None)
        return done


def assign_from_beginning(consumer: Consumer, topic: str) -> CatchUp:
    """Assign every partition of `topic` from its first offset; the returned CatchUp says when the end
    that existed now has been reached."""
    partitions = topic_partitions(consumer, topic)
    catch_up = CatchUp(consumer, topic)
    catch_up.add(partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return catch_up


def decode_latest(
    serde: AvroSerde,
    topic: str,
    schema: str,
    message: Message,
    on_error: Callable[[Message, Exception], None],
) -> tuple[str, dict[str, Any] | None] | None:
    """(key, value or None for a tombstone) of one compacted-topic record; None for a consumer error or an
    undecodable record (handed to `on_error`)."""
    if message.error():
        return None
    key = (message.key() or b"").decode(errors="replace")
    if message.value() is None:
        return key, None
    try:
        return key, serde.deserialize(topic, schema, message.value())
    except SerdeError as error:
        on_error(message, error)
        return None


def read_compacted(
    settings: KafkaSettings, serde: AvroSerde, topic: str, schema: str, timeout_s: float = 15.0
) -> dict[str, dict[str, Any]]:
    """Latest record per key of a compacted topic, read from the beginning to the current end
    (undecodable records are skipped and summarised in one warning, not one line per record)."""
    undecodable: list[str] = []

    def skip(message: Message, error: Exception) -> None:
        undecodable.append(f"{topic}[{message.partition()}]@{message.offset()}: {error}")

    consumer = make_reader(settings, "compacted-reader")
    latest: dict[str, dict[str, Any]] = {}
    try:
        catch_up = assign_from_beginning(consumer, topic)
        deadline = time.monotonic() + timeout_s
        while catch_up.pending and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            decoded = decode_latest(serde, topic, schema, message, skip) if message is not None else None
            if decoded is not None:
                key, value = decoded
                if value is None:
                    latest.pop(key, None)
                else:
                    latest[key] = value
            catch_up.reached()
    finally:
        consumer.close()
    if undecodable:
        log.warning("skipped %d undecodable records of %s, e.g. %s", len(undecodable), topic, undecodable[0])
    return latest
