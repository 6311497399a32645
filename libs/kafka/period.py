"""Reading every record of a topic written since a moment, up to the end the topic has now: the release
ledger (`cctv audit`, the console's ledger view) and the false-alarm statistics (`cctv eval-marks`)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

from libs.kafka.clients import make_reader, topic_partitions
from libs.kafka.compacted import CatchUp
from libs.serde import AvroSerde, SerdeError
from libs.settings import KafkaSettings


def read_since(
    kafka: KafkaSettings,
    serde: AvroSerde,
    topic: str,
    schema: str,
    since_ms: int | None,
    purpose: str,
    timeout_s: float = 30.0,
) -> tuple[list[dict[str, Any]], int]:
    """(every record of `topic` with a timestamp at or after `since_ms` (all when None), up to the end the
    topic had when reading started; how many could not be decoded, skipped and counted).

    `purpose` names the reader's group, so it stays within the caller's ACL prefix. Partitions with nothing
    in the period are not read at all: the start comes from the broker's time index, not a scan."""
    consumer = make_reader(kafka, purpose)
    records: list[dict[str, Any]] = []
    undecodable = 0
    try:
        partitions = topic_partitions(consumer, topic)
        catch_up = CatchUp(consumer, topic)
        catch_up.add(partitions)
        if since_ms is None:
            starts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        else:
            found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=10)
            # No record at or after since_ms in a partition: offset -1, nothing to read there.
            starts = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found]
            catch_up.drop(tp.partition for tp in starts if tp.offset == OFFSET_END)
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        catch_up.reached()
        while catch_up.pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end within {timeout_s:.0f} s")
            for message in consumer.consume(500, 0.5):
                if message.error() or message.value() is None:
                    continue
                try:
                    records.append(serde.deserialize(topic, schema, message.value()))
                except SerdeError:
                    undecodable += 1
            catch_up.reached()
    finally:
        consumer.close()
    return records, undecodable
