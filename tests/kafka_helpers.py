"""Small helpers for tests that talk to the real broker: wait on conditions with deadlines, never sleep."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

from confluent_kafka import Consumer, Message

from libs.kafka import high_watermark
from libs.serde import SerdeError
from libs.settings import KafkaSettings

T = TypeVar("T")
# How long a test lets a service shut down after SIGTERM before ServiceProcess kills it. The exit code
# is what tests assert (a clean flush and commit), not the speed: a loaded 2-core CI machine is slow.
GRACEFUL_STOP_S = 120.0


def free_port() -> int:
    """A port nothing listens on right now (another process may still take it later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port that refuses connections for as long as the block runs: bound, never listening, so no
    other server can take it meanwhile (a plain free_port() can be reused by a server started later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def read_topic(
    settings: KafkaSettings,
    topic: str,
    count: int,
    timeout_s: float = 60.0,
    group: str | None = None,
    predicate: Callable[[Message], bool] | None = None,
) -> list[Message]:
    """Read at least `count` records (matching `predicate`) from the start of `topic` with a plain consumer."""
    import uuid

    consumer = Consumer(
        settings.client_config()
        | {
            "group.id": group or f"test-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
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


class TopicWatcher:
    """Collects decoded records of a topic, from the moment it is created, on a background thread.

    A record that cannot be decoded is never dropped silently: snapshot() then fails, naming it, since
    a check that something is absent would otherwise pass on records nobody could read. `keys` narrows
    the watch to records with those Kafka keys (others are skipped undecoded: another test's business)."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        schema: str,
        serde: Any,
        keep: Callable[[dict[str, Any]], bool] = lambda _v: True,
        keys: Collection[bytes] | None = None,
    ) -> None:
        import threading
        import uuid

        from confluent_kafka import TopicPartition

        self.records: list[dict[str, Any]] = []
        self.messages: list[tuple[int, int]] = []  # (partition, offset) of each kept record
        self.keys = None if keys is None else frozenset(keys)
        self.undecodable: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(
            settings.client_config()
            | {
                "group.id": f"watch-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        # Start exactly at the current ends: deterministic, no race with an 'latest' reset.
        starts = []
        for partition in partitions:
            high = high_watermark(self._consumer, topic, partition)
            starts.append(TopicPartition(topic, partition, high))
        self._consumer.assign(starts)
        self.topic, self.schema, self.serde, self.keep = topic, schema, serde, keep
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(500, 0.2):
                if message.error() or message.value() is None:
                    continue
                if self.keys is not None and message.key() not in self.keys:
                    continue
                try:
                    value = self.serde.deserialize(self.topic, self.schema, message.value())
                except SerdeError as error:
                    with self._lock:
                        self.undecodable.append(
                            f"partition {message.partition()} offset {message.offset()} key {message.key()!r}: {error}"
                        )
                    continue
                if self.keep(value):
                    with self._lock:
                        self.records.append(value)
                        self.messages.append((message.partition(), message.offset()))
        self._consumer.close()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            if self.undecodable:
                raise AssertionError(
                    f"{len(self.undecodable)} records on {self.topic} could not be decoded as "
                    f"{self.schema}; first: {self.undecodable[0]}"
                )
            return list(self.records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> TopicWatcher:
        return self

    def __exit__(self, *_args: object) -> None:
        self.close()


def alert_record(
    alert_id: str,
    camera: str,
    kind: str = "NEW",
    sequence: int = 0,
    *,
    started_us: int,
    detected_us: int | None = None,
    ended_us: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A complete Alert record (schemas/alert.avsc) of an intrusion in zone 'road'; `fields` override."""
    return {
        "alert_id": alert_id,
        "kind": kind,
        "sequence": sequence,
        "event_type": "intrusion",
        "rule_id": "r1",
        "severity": "HIGH",
        "camera_id": camera,
        "camera_name": camera,
        "site_id": "site-1",
        "location": None,
        "tags": [],
        "zone_id": "road",
        "zone_name": "road",
        "started_at": started_us,
        "detected_at": started_us if detected_us is None else detected_us,
        "ended_at": ended_us,
        "track_ids": [1],
        "objects": [],
        "frame": None,
        "snapshot_jpeg": None,
        "description": "person entered restricted zone road",
        "destinations": [],
        "produced_at": time.time_ns() // 1000,
        "evidence": None,
    } | fields


def frame_record(
    camera: str, sequence: int, jpeg: bytes, *, capture_us: int | None = None, **fields: Any
) -> dict[str, Any]:
    """A complete Frame record (schemas/frame.avsc) of a motion-sampled 8x8 frame; `fields` override."""
    now_us = time.time_ns() // 1000
    return {
        "camera_id": camera,
        "session_id": "s",
        "sequence": sequence,
        "capture_time": now_us if capture_us is None else capture_us,
        "pts_us": None,
        "source_partition": 0,
        "source_offset": sequence,
        "width": 8,
        "height": 8,
        "jpeg": jpeg,
        "motion_score": 0.2,
        "reason": "MOTION",
        "sampled_at": now_us,
    } | fields
