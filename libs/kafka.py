"""Kafka client setup with safe defaults, topic administration, and the consume→process→produce→commit loop.

Delivery guarantee: at least once. A batch's offsets are committed only after every record it
produced has been acknowledged by the brokers (acks=all, idempotent producer); if a delivery fails,
the consumer seeks back and the batch is processed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from libs import metrics
from libs.health import Health
from libs.serde import AvroSerde, SerdeError
from libs.settings import KafkaSettings
from libs.topics import DLQ, TopicSpec

log = logging.getLogger(__name__)


def broker_health_callback(health: Health, what: str) -> Callable[[KafkaError], None]:
    """librdkafka error_cb: readiness fails while no broker is reachable (liveness stays green: the
    client reconnects by itself, a restart would not help)."""

    def on_error(error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            health.set_ready(False, f"{what}: all Kafka brokers are down")
            log.error("%s: all Kafka brokers are down; retrying", what)
        elif error.fatal():
            health.set_ready(False, f"{what}: fatal Kafka error {error.str()}")
            log.error("%s: fatal Kafka error: %s", what, error.str())
        else:
            log.warning("%s: Kafka error: %s", what, error.str())

    return on_error


class BrokerProbe:
    """While a service is not ready (brokers were down), ask Kafka for metadata every few seconds and
    report ready again as soon as it answers, without waiting for traffic or a rebalance."""

    def __init__(self, client: Consumer | Producer, topic: str, health: Health, interval_s: float = 2.0) -> None:
        self.client, self.topic, self.health, self.interval_s = client, topic, health, interval_s
        self._next = 0.0

    def check(self) -> None:
        if self.health.ready or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.interval_s
        try:
            self.client.list_topics(self.topic, timeout=1.0)
        except KafkaException:
            return
        self.health.set_ready(True)
        log.info("Kafka reachable again")


def make_producer(settings: KafkaSettings, client_id: str, health: Health | None = None, **overrides: Any) -> Producer:
    config = settings.client_config() | {
        "client.id": f"{settings.client_id_prefix}-{client_id}",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 8 * 1024 * 1024,
        # Bound the time a record may wait for a broker, so an outage surfaces as a delivery error.
        "message.timeout.ms": 120_000,
    }
    if health is not None:
        config["error_cb"] = broker_health_callback(health, f"producer {client_id}")
    config.update(overrides)
    return Producer(config)


def make_consumer(settings: KafkaSettings, group_id: str, health: Health | None = None, **overrides: Any) -> Consumer:
    config = settings.client_config() | {
        "client.id": f"{settings.client_id_prefix}-{group_id}",
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        # A dead replica's partitions move within this time.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        "max.poll.interval.ms": 300_000,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
    }
    if health is not None:
        config["error_cb"] = broker_health_callback(health, f"consumer {group_id}")
    config.update(overrides)
    return Consumer(config)


def make_admin(settings: KafkaSettings) -> AdminClient:
    return AdminClient(settings.client_config())


def wait_for_broker(settings: KafkaSettings, timeout_s: float = 30.0) -> int:
    """Block until the cluster answers a metadata request; returns the broker count."""
    admin = make_admin(settings)
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return len(admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic()))).brokers)
        except KafkaException as error:
            last_error = error
            time.sleep(0.2)
    raise TimeoutError(f"Kafka at {settings.bootstrap_servers} did not answer within {timeout_s:.0f} s: {last_error}")


def create_topics(settings: KafkaSettings, specs: Sequence[TopicSpec], replication_factor: int = -1) -> dict[str, str]:
    """Create missing topics (existing ones are left alone). Returns topic → 'created' | 'exists'.

    replication_factor -1 uses the broker default (default.replication.factor)."""
    admin = make_admin(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    outcome = {spec.name: "exists" for spec in specs if spec.name in existing}
    missing = [
        NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=replication_factor, config=spec.config)
        for spec in specs
        if spec.name not in existing
    ]
    if missing:
        for name, future in admin.create_topics(missing, operation_timeout=30).items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                outcome[name] = "exists"
        _wait_for_leaders(admin, [t.topic for t in missing])
    return outcome


def _wait_for_leaders(admin: AdminClient, topics: list[str], timeout_s: float = 30.0) -> None:
    """New topics are usable once every partition has a leader; callers should not race the election."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=10).topics
        if all(
            name in metadata and metadata[name].error is None and metadata[name].partitions
            and all(p.leader >= 0 for p in metadata[name].partitions.values())
            for name in topics
        ):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topics {topics} have partitions without a leader after {timeout_s:.0f} s")


def high_watermark(consumer: Consumer, topic: str, partition: int, timeout_s: float = 30.0) -> int:
    """End offset of a partition, riding out the moments after a broker (re)start or leader move when
    it answers 'not leader' while it still loads its logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=min(10.0, timeout_s))[1]
        except KafkaException as error:
            if not error.args[0].retriable() and error.args[0].code() not in (
                KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TIMED_OUT,
            ):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def missing_topics(settings: KafkaSettings, names: Sequence[str], timeout_s: float = 10.0) -> list[str]:
    topics = make_admin(settings).list_topics(timeout=timeout_s).topics
    return [name for name in names if name not in topics]


@dataclass
class Incoming:
    """A consumed record, decoded, with its coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]
    timestamp_ms: int | None
    raw: Message = field(repr=False)


@dataclass
class Outgoing:
    """A record to produce: Avro-encoded with `schema` unless `value` is None (a tombstone)."""

    topic: str
    key: str | bytes | None
    schema: str
    value: dict[str, Any] | None


@dataclass
class Rejected:
    """A consumed record the core could not process; it goes to the dead-letter topic."""

    record: Incoming | Message
    error: Exception


BatchHandler = Callable[[list[Incoming]], tuple[list[Outgoing], list[Rejected]]]


class DeadLetterPublisher:
    """Sends an unprocessable record, with its original bytes and coordinates, to cctv.dlq.v1."""

    def __init__(self, producer: Producer, serde: AvroSerde, service: str, group_id: str | None) -> None:
        self.producer = producer
        self.serde = serde
        self.service = service
        self.group_id = group_id

    def publish(self, message: Message, error: Exception) -> None:
        from libs.redact import redact_text

        timestamp_type, timestamp = message.timestamp()
        envelope = {
            "source_topic": message.topic(),
            "source_partition": message.partition(),
            "source_offset": message.offset(),
            "source_timestamp": timestamp if timestamp_type else None,
            "key": message.key(),
            "value": message.value(),
            "headers": {k: v for k, v in (message.headers() or [])},
            "error_type": type(error).__name__,
            "error_message": redact_text(str(error))[:4000],
            "service": self.service,
            "consumer_group": self.group_id,
            "failed_at": int(time.time() * 1000),
        }
        self.producer.produce(DLQ, key=message.key(), value=self.serde.serialize(DLQ, "DeadLetter", envelope))
        metrics.DEAD_LETTERS.labels(self.service, type(error).__name__).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s: %s",
            message.topic(), message.partition(), message.offset(), type(error).__name__, redact_text(str(error)),
        )


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


class ConsumeProduceLoop:
    """consume a batch → decode (poison → DLQ) → core handler → produce → flush → commit.

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
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
    ) -> None:
        self.service = service
        self.group_id = group_id
        self.topics = list(topics)
        self.schema_for = schema_for
        self.consumer = consumer
        self.serde = serde
        self.handler = handler
        self.health = health
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.producing = Producing(producer, serde, service)
        self.dead_letters = DeadLetterPublisher(producer, serde, service, group_id)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self.probe = BrokerProbe(consumer, self.topics[0], health)
        self.assignment: set[tuple[str, int]] = set()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment |= {(p.topic, p.partition) for p in partitions}
        metrics.ASSIGNED_PARTITIONS.labels(self.service).set(len(self.assignment))
        self.health.set_ready(True)
        log.info("assigned %d partitions (now %d)", len(partitions), len(self.assignment))
        if self._on_assign:
            self._on_assign(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment -= {(p.topic, p.partition) for p in partitions}
        metrics.ASSIGNED_PARTITIONS.labels(self.service).set(len(self.assignment))
        log.info("revoked %d partitions (now %d)", len(partitions), len(self.assignment))
        if self._on_revoke:
            self._on_revoke(partitions)

    def subscribe(self) -> None:
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)

    def decode(self, messages: list[Message]) -> list[Incoming]:
        decoded: list[Incoming] = []
        for message in messages:
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", message.error().str())
                continue
            metrics.RECORDS_CONSUMED.labels(self.service, message.topic()).inc()
            try:
                value = self.serde.deserialize(message.topic(), self.schema_for(message.topic()), message.value())
            except SerdeError as error:
                self.dead_letters.publish(message, error)
                continue
            decoded.append(Incoming(
                topic=message.topic(), partition=message.partition(), offset=message.offset(),
                key=message.key(), value=value, timestamp_ms=message.timestamp()[1], raw=message,
            ))
        return decoded

    def run_once(self) -> int:
        """Process one batch; returns how many records were consumed."""
        messages = self.consumer.consume(self.batch_size, self.poll_timeout_s)
        self.health.beat()
        if self.assignment:
            self.probe.check()
        if not messages:
            return 0
        started = time.perf_counter()
        incoming = self.decode(messages)
        outputs, rejected = self.handler(incoming) if incoming else ([], [])
        for item in rejected:
            raw = item.record.raw if isinstance(item.record, Incoming) else item.record
            self.dead_letters.publish(raw, item.error)
        for out in outputs:
            self.producing.send(out)
        try:
            self.producing.flush()
        except DeliveryFailed as error:
            log.error("delivery failed, re-processing the batch from its first offsets: %s", error)
            self._rewind(messages)
            return len(messages)
        self._commit(messages)
        metrics.BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        return len(messages)

    def _commit(self, messages: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            if not message.error():
                last[(message.topic(), message.partition())] = message.offset()
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items() if (t, p) in self.assignment]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as error:
                # Typically a rebalance in between: the records will be re-delivered (at least once).
                log.warning("offset commit failed, records may be re-delivered: %s", error)

    def _rewind(self, messages: list[Message]) -> None:
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            if not message.error():
                first.setdefault((message.topic(), message.partition()), message.offset())
        for (topic, partition), offset in first.items():
            if (topic, partition) in self.assignment:
                self.consumer.seek(TopicPartition(topic, partition, offset))

    def run(self, stop: Callable[[], bool]) -> None:
        self.subscribe()
        try:
            while not stop():
                self.run_once()
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.producing.flush(30)
        except DeliveryFailed as error:
            log.error("records undelivered at shutdown: %s", error)
        self.consumer.close()
