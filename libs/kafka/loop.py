"""The consume → handle → produce → commit loop, and the pieces it is built from.

Delivery guarantee: at least once. Offsets are committed only after every record produced for them
has been acknowledged by the brokers (acks=all, idempotent producer); if a delivery fails, the
consumer seeks back and the records are processed again.

Pieces, each usable on its own (the detector composes them around an inference thread):
* `Subscription` - the group consumer: rebalance bookkeeping, health beats and broker probing,
  offset tracking (commit after delivery, rewind after a failed delivery);
* `RecordDecoder` - Avro decode, or dead-letter the poison record and carry on;
* `Producing` - serialize and produce, with delivery failures collected until `flush()`;
* `Backpressure` - pause every assigned partition above a high watermark, resume below a low one;
* `deliver_then_commit` - flush, then commit or rewind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from libs import metrics
from libs.health import Health
from libs.kafka.clients import BrokerProbe
from libs.kafka.records import (
    DeadLetterPublisher,
    Incoming,
    Outgoing,
    Rejected,
    coordinates,
)
from libs.serde import AvroSerde, SerdeError

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[Incoming]], tuple[list[Outgoing], list[Rejected]]]
PartitionsCallback = Callable[[list[TopicPartition]], None]


class DeliveryFailed(Exception):
    pass


class Producing:
    """Serializes and produces Outgoing records, tracking delivery failures until flush()."""

    def __init__(self, producer: Producer, serde: AvroSerde, service: str) -> None:
        self.producer = producer
        self.serde = serde
        self.service = service
        self._failures: list[str] = []

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            metrics.DELIVERY_FAILURES.labels(self.service, message.topic()).inc()
            self._failures.append(f"{message.topic()}: {error.str()}")
        else:
            metrics.RECORDS_PRODUCED.labels(self.service, message.topic()).inc()

    def send(self, out: Outgoing) -> None:
        value = None if out.value is None else self.serde.serialize(out.topic, out.schema, out.value)
        while True:
            try:
                self.producer.produce(out.topic, key=out.key, value=value, on_delivery=self._on_delivery)
                return
            except BufferError:
                # Local queue full: serve delivery callbacks to make room instead of growing memory.
                self.producer.poll(0.1)

    def flush(self, timeout_s: float = 120.0) -> None:
        remaining = self.producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if remaining:
            failures.append(f"{remaining} records still undelivered after {timeout_s:.0f} s")
        if failures:
            raise DeliveryFailed("; ".join(failures[:5]))


class RecordDecoder:
    """Consumed messages → decoded `Incoming` records; a record that does not decode goes to the
    dead-letter topic (original bytes kept) and the rest of the batch carries on."""

    def __init__(
        self, serde: AvroSerde, schema_for: Callable[[str], str], dead_letters: DeadLetterPublisher, service: str
    ) -> None:
        self.serde = serde
        self.schema_for = schema_for
        self.dead_letters = dead_letters
        self.service = service

    def decode(self, messages: list[Message]) -> list[Incoming]:
        decoded: list[Incoming] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", error.str())
                continue
            topic, partition, offset = coordinates(message)
            metrics.RECORDS_CONSUMED.labels(self.service, topic).inc()
            try:
                value = self.serde.deserialize(topic, self.schema_for(topic), message.value())
            except SerdeError as serde_error:
                self.dead_letters.publish(message, serde_error)
                continue
            decoded.append(
                Incoming(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=message.key(),
                    value=value,
                    timestamp_ms=message.timestamp()[1],
                    raw=message,
                )
            )
        return decoded


class Subscription:
    """A group consumer's side of the loop: subscribe with rebalance hooks, poll (beating health and
    probing the brokers while not ready), commit what was delivered, rewind what was not."""

    def __init__(
        self,
        consumer: Consumer,
        topics: Sequence[str],
        service: str,
        health: Health,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> None:
        self.consumer = consumer
        self.topics = list(topics)
        self.service = service
        self.health = health
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.probe = BrokerProbe(consumer, self.topics[0], health)
        self.assignment: set[tuple[str, int]] = set()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment |= {(p.topic, p.partition) for p in partitions}
        metrics.ASSIGNED_PARTITIONS.labels(self.service).set(len(self.assignment))
        self.health.set_ready(True)
        log.info("assigned %d partitions (now %d)", len(partitions), len(self.assignment))
        if self.on_assign:
            self.on_assign(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment -= {(p.topic, p.partition) for p in partitions}
        metrics.ASSIGNED_PARTITIONS.labels(self.service).set(len(self.assignment))
        log.info("revoked %d partitions (now %d)", len(partitions), len(self.assignment))
        if self.on_revoke:
            self.on_revoke(partitions)

    def subscribe(self) -> None:
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)

    def poll(self, max_records: int, timeout_s: float) -> list[Message]:
        messages = self.consumer.consume(max_records, timeout_s)
        self.health.beat()
        if self.assignment:
            self.probe.check()
        return messages

    def commit(self, messages: list[Message]) -> None:
        """Commit past the last offset per partition, for partitions still assigned."""
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            if not message.error():
                topic, partition, offset = coordinates(message)
                last[(topic, partition)] = offset
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items() if (t, p) in self.assignment]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as error:
                # Typically a rebalance in between: the records will be re-delivered (at least once).
                log.warning("offset commit failed, records may be re-delivered: %s", error)

    def rewind(self, messages: list[Message]) -> None:
        """Seek back to the first offset per partition, so those records are consumed again."""
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            if not message.error():
                topic, partition, offset = coordinates(message)
                first.setdefault((topic, partition), offset)
        for (topic, partition), offset in first.items():
            if (topic, partition) in self.assignment:
                self.consumer.seek(TopicPartition(topic, partition, offset))

    def close(self) -> None:
        self.consumer.close()


class Backpressure:
    """Pause every assigned partition while `queued` is at or above `high`; resume at or below `low`,
    so memory stays bounded however far behind the handler is."""

    def __init__(self, consumer: Consumer, service: str, high: int, low: int) -> None:
        if low >= high:
            raise ValueError(f"backpressure low watermark ({low}) must be below the high one ({high})")
        self.consumer = consumer
        self.service = service
        self.high, self.low = high, low
        self.paused = False

    def update(self, queued: int) -> None:
        if not self.paused and queued >= self.high:
            assignment = self.consumer.assignment()
            self.consumer.pause(assignment)
            self.paused = True
            metrics.PAUSED_PARTITIONS.labels(self.service).set(len(assignment))
            log.info("backpressure: %d records queued, paused %d partitions", queued, len(assignment))
        elif self.paused and queued <= self.low:
            self.release()
            log.info("backpressure: queue drained to %d records, resumed", queued)

    def release(self) -> None:
        """Resume everything (after a rebalance the queue no longer reflects the assignment)."""
        if self.paused:
            self.consumer.resume(self.consumer.assignment())
            self.paused = False
            metrics.PAUSED_PARTITIONS.labels(self.service).set(0)


def deliver_then_commit(producing: Producing, subscription: Subscription, messages: list[Message]) -> bool:
    """Wait for everything produced so far, then commit `messages`; on a failed delivery rewind them
    instead (they are processed again). Returns whether they were committed."""
    try:
        producing.flush()
    except DeliveryFailed as error:
        log.error("delivery failed, re-processing from the first undelivered records: %s", error)
        subscription.rewind(messages)
        return False
    subscription.commit(messages)
    return True


def flush_and_close(producing: Producing, subscription: Subscription, timeout_s: float = 30.0) -> None:
    """Shutdown: deliver what is still queued (bounded: during an outage nothing more can be), then leave
    the group."""
    try:
        producing.flush(timeout_s)
    except DeliveryFailed as error:
        log.error("records undelivered at shutdown: %s", error)
    subscription.close()


class ConsumeProduceLoop:
    """consume a batch → decode (poison → DLQ) → handler → produce → flush → commit, on one thread.

    on_assign / on_revoke let the service reset per-partition state (e.g. decoders) on rebalance.
    """

    def __init__(
        self,
        *,
        service: str,
        group_id: str,
        topics: Sequence[str],
        schema_for: Callable[[str], str],
        consumer: Consumer,
        producer: Producer,
        serde: AvroSerde,
        handler: BatchHandler,
        health: Health,
        batch_size: int = 200,
        poll_timeout_s: float = 0.5,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> None:
        self.service = service
        self.handler = handler
        self.health = health
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.subscription = Subscription(consumer, topics, service, health, on_assign, on_revoke)
        self.producing = Producing(producer, serde, service)
        self.dead_letters = DeadLetterPublisher(producer, serde, service, group_id)
        self.decoder = RecordDecoder(serde, schema_for, self.dead_letters, service)

    def subscribe(self) -> None:
        self.subscription.subscribe()

    def run_once(self) -> int:
        """Process one batch; returns how many records were consumed."""
        messages = self.subscription.poll(self.batch_size, self.poll_timeout_s)
        if not messages:
            return 0
        started = time.perf_counter()
        incoming = self.decoder.decode(messages)
        outputs, rejected = self.handler(incoming) if incoming else ([], [])
        for item in rejected:
            self.dead_letters.publish(item.message, item.error)
        for out in outputs:
            self.producing.send(out)
        if deliver_then_commit(self.producing, self.subscription, messages):
            metrics.BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        return len(messages)

    def run(self, stop: Callable[[], bool]) -> None:
        self.subscribe()
        try:
            while not stop():
                self.run_once()
        finally:
            self.close()

    def close(self) -> None:
        flush_and_close(self.producing, self.subscription)
