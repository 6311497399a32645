"""Background readers of the console: consumers assigned to explicit partitions and start offsets, with
no consumer group, so every replica reads everything and all replicas converge on the same state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from libs.health import Health
from libs.kafka import high_watermark

log = logging.getLogger(__name__)


class PartitionReader:
    """One background consumer assigned to explicit partitions and start offsets (no group: every
    replica reads everything). `caught_up` is set once the ends that existed at start are reached."""

    def __init__(
        self,
        name: str,
        consumer: Consumer,
        starts: list[TopicPartition],
        ends: dict[tuple[str, int], int],
        handle: Callable[[Message], None],
        health: Health,
    ) -> None:
        self.name, self.consumer, self.handle, self.health = name, consumer, handle, health
        self.caught_up = threading.Event()
        self._pending = {tp for tp, end in ends.items() if end > 0}
        self._ends = ends
        self._stop = threading.Event()
        consumer.assign(starts)
        if not self._pending:
            self.caught_up.set()
        self._thread = threading.Thread(target=self._run, name=f"console-{name}", daemon=True)

    def start(self) -> PartitionReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # consume(n, timeout) waits for n records or the timeout, which would hold frames back
                # up to the timeout: wait for the first record only, then take what is already here.
                first = self.consumer.poll(0.5)
                messages = [] if first is None else [first, *self.consumer.consume(499, 0)]
            except KafkaException as error:
                log.warning("%s reader: %s", self.name, error)
                continue
            for message in messages:
                problem = message.error()
                if problem is not None:
                    if problem.code() != KafkaError._PARTITION_EOF:
                        log.warning("%s reader: %s", self.name, problem.str())
                    continue
                try:
                    self.handle(message)
                except Exception:  # one bad record must not stop the console's view of the city
                    log.exception(
                        "%s reader: record %s[%d]@%d not applied",
                        self.name,
                        message.topic(),
                        message.partition(),
                        message.offset(),
                    )
            if self._pending:
                positions = self.consumer.position([TopicPartition(t, p) for t, p in self._pending])
                self._pending -= {
                    (tp.topic, tp.partition) for tp in positions if tp.offset >= self._ends[(tp.topic, tp.partition)]
                }
                if not self._pending:
                    log.info("%s reader caught up", self.name)
                    self.caught_up.set()
        self.consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def window_starts(
    consumer: Consumer, topics: dict[str, int | None]
) -> tuple[list[TopicPartition], dict[tuple[str, int], int]]:
    """Start offsets per partition (`None` = beginning, else the first offset at or after that time in ms),
    and the end offsets that exist now (a reader is caught up once it reaches them)."""
    starts, ends = [], {}
    for topic, since_ms in topics.items():
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"{topic}: {metadata.error.str()} (run `cctv topics create`)")
        partitions = sorted(metadata.partitions)
        for partition in partitions:
            ends[(topic, partition)] = high_watermark(consumer, topic, partition)
        if since_ms is None:
            starts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        else:
            found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=10)
            # -1 means no record at or after that time: start at the end.
            starts += [TopicPartition(t.topic, t.partition, t.offset if t.offset >= 0 else OFFSET_END) for t in found]
    return starts, ends


def live_starts(consumer: Consumer, topics: tuple[str, ...]) -> list[TopicPartition]:
    """Every partition of these topics from its end: only what arrives from now on."""
    live = []
    for topic in topics:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        live += [TopicPartition(topic, p, OFFSET_END) for p in partitions]
    return live
