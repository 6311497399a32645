"""Small helpers for tests that talk to the real broker: wait on conditions with deadlines, never sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, Message

from libs.settings import KafkaSettings

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def read_topic(settings: KafkaSettings, topic: str, count: int, timeout_s: float = 60.0,
               group: str | None = None, predicate: Callable[[Message], bool] | None = None) -> list[Message]:
    """Read at least `count` records (matching `predicate`) from the start of `topic` with a plain consumer."""
    import uuid

    consumer = Consumer(settings.client_config() | {
        "group.id": group or f"test-reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    found: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            if predicate is None or predicate(message):
                found.append(message)
    finally:
        consumer.close()
    if len(found) < count:
        raise AssertionError(f"read {len(found)} of {count} expected records from {topic} in {timeout_s:.0f} s")
    return found


def new_topics(settings: KafkaSettings, *names: str, partitions: int = 1, config: dict[str, Any] | None = None) -> None:
    from libs.kafka import create_topics
    from libs.topics import TopicSpec

    create_topics(settings, [TopicSpec(name, "n/a", partitions, dict(config or {})) for name in names])
