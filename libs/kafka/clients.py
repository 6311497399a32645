"""Kafka clients with safe defaults (producer, group consumer, short-lived reader, admin), broker
health, and topic administration."""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from libs.health import Health
from libs.settings import KafkaSettings
from libs.topics import TopicSpec

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


def make_reader(settings: KafkaSettings, purpose: str, **overrides: Any) -> Consumer:
    """A short-lived consumer that assigns partitions itself (no group membership, no commits): for
    reading a compacted topic, a single frame by offset or a topic's tail. `purpose` names it in the
    broker's client list."""
    config = settings.client_config() | {
        "client.id": f"{settings.client_id_prefix}-{purpose}",
        # Never used for a group (assign only), but librdkafka wants one; unique so nothing is shared.
        "group.id": f"cctv-{purpose}-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }
    config.update(overrides)
    return Consumer(config)


def topic_partitions(client: Consumer | Producer | AdminClient, topic: str, timeout_s: float = 10.0) -> list[int]:
    """Partition numbers of a topic; a clear error if it does not exist."""
    metadata = client.list_topics(topic, timeout=timeout_s).topics[topic]
    if metadata.error is not None:
        raise RuntimeError(f"{topic}: {metadata.error.str()} (run `cctv topics create`)")
    return sorted(metadata.partitions)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition our producers put a keyed record in: librdkafka's default partitioner
    (consistent_random) is CRC-32 of the key mod the partition count (not Java's murmur2)."""
    return zlib.crc32(key) % partitions


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
            name in metadata
            and metadata[name].error is None
            and metadata[name].partitions
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
                KafkaError.NOT_LEADER_FOR_PARTITION,
                KafkaError.LEADER_NOT_AVAILABLE,
                KafkaError._TIMED_OUT,
            ):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def missing_topics(settings: KafkaSettings, names: Sequence[str], timeout_s: float = 10.0) -> list[str]:
    topics = make_admin(settings).list_topics(timeout=timeout_s).topics
    return [name for name in names if name not in topics]
