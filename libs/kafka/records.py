"""What flows through a service loop: consumed records, records to produce, rejects, and the
dead-letter publisher every service (the Faust one included) sends unprocessable input to."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message, Producer

from libs import metrics
from libs.redact import redact_text
from libs.serde import AvroSerde
from libs.topics import DLQ

log = logging.getLogger(__name__)


def coordinates(message: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed record (always set on one; only produced ones lack them)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("message has no topic/partition/offset: not a consumed record")
    return topic, partition, offset


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A consumed record's original bytes and coordinates, whichever client consumed it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: dict[str, str | bytes | None] = field(default_factory=dict)

    @classmethod
    def of(cls, message: Message) -> SourceRecord:
        timestamp_type, timestamp = message.timestamp()
        topic, partition, offset = coordinates(message)
        headers = message.headers() or []
        pairs = headers.items() if isinstance(headers, dict) else headers
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp if timestamp_type else None,
            key=message.key(),
            value=message.value(),
            headers=dict(pairs),
        )


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

    @property
    def message(self) -> Message:
        return self.record.raw if isinstance(self.record, Incoming) else self.record


class DeadLetterPublisher:
    """Sends an unprocessable record, with its original bytes and coordinates, to cctv.dlq.v1."""

    def __init__(self, producer: Producer, serde: AvroSerde, service: str, group_id: str | None) -> None:
        self.producer = producer
        self.serde = serde
        self.service = service
        self.group_id = group_id

    def publish(self, source: Message | SourceRecord, error: Exception) -> None:
        record = source if isinstance(source, SourceRecord) else SourceRecord.of(source)
        envelope = {
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "source_timestamp": record.timestamp_ms,
            "key": record.key,
            "value": record.value,
            "headers": record.headers,
            "error_type": type(error).__name__,
            "error_message": redact_text(str(error))[:4000],
            "service": self.service,
            "consumer_group": self.group_id,
            "failed_at": int(time.time() * 1000),
        }
        self.producer.produce(DLQ, key=record.key, value=self.serde.serialize(DLQ, "DeadLetter", envelope))
        metrics.DEAD_LETTERS.labels(self.service, type(error).__name__).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s: %s",
            record.topic,
            record.partition,
            record.offset,
            type(error).__name__,
            redact_text(str(error)),
        )
