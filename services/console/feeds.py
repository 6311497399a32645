"""The console's Kafka side: background readers that fold the topics into ConsoleState, and the
producer of incident actions and audit records. Every replica reads everything itself (no consumer
group), so all replicas converge on the same state; nothing lives only in one replica's memory."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import Counter, Gauge

from libs.audit import SCHEMA as AUDIT_SCHEMA
from libs.audit import audit_record
from libs.health import Health
from libs.inventory import InventoryFollower
from libs.kafka import high_watermark, make_admin, make_consumer, make_producer
from libs.serde import AvroSerde, SerdeError
from libs.topics import (
    ALERTS,
    AUDIT,
    CAMERA_ACTIVITY,
    CAMERA_STATUS,
    DETECTIONS,
    FRAMES,
    INCIDENT_ACTIONS,
    PLATFORM_EVENTS,
)
from services.console.incidents import Action, IncidentBook
from services.console.settings import ConsoleSettings
from services.console.wall import CameraState

log = logging.getLogger(__name__)

SCHEMA_OF = {
    ALERTS: "Alert",
    INCIDENT_ACTIONS: "IncidentAction",
    CAMERA_ACTIVITY: "CameraActivity",
    CAMERA_STATUS: "CameraStatus",
    PLATFORM_EVENTS: "PlatformEvent",
    AUDIT: "AuditRecord",
    FRAMES: "Frame",
    DETECTIONS: "Detections",
}
UNDECODABLE = Counter("cctv_console_undecodable_records_total", "Records the console could not decode", ["topic"])
FRAMES_HELD = Gauge("cctv_console_frames_held", "Latest frames held in memory (one per watched camera)")
AUDIT_FAILED = Counter("cctv_console_audit_delivery_failures_total", "Audit records Kafka did not accept")
WATCH_TTL_S = 15.0


@dataclass
class LatestFrame:
    jpeg: bytes
    capture_time_us: int
    sequence: int
    width: int
    height: int
    received_ms: int


@dataclass
class ConsoleState:
    """What one replica holds, all bounded: the incident book, one entry per camera, the latest frame
    and detections of watched cameras only, and short tails of platform events and audit records."""

    book: IncidentBook
    audit_keep: int = 2000
    lock: threading.RLock = field(default_factory=threading.RLock)
    cameras: dict[str, CameraState] = field(default_factory=dict)
    frames: dict[str, LatestFrame] = field(default_factory=dict)
    detections: dict[str, dict[str, Any]] = field(default_factory=dict)
    watched: dict[str, float] = field(default_factory=dict)  # camera id -> monotonic time of last interest
    platform_events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    audit: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=2000))
    audit_ids: set[str] = field(default_factory=set)
    inventory_version: int = -1
    pipeline_lag: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Called (from the reader thread) with a camera id when its latest frame changed: wakes long-polls.
    frame_waiters: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.audit = deque(self.audit, maxlen=self.audit_keep)

    def camera(self, camera_id: str) -> CameraState:
        state = self.cameras.get(camera_id)
        if state is None:
            state = self.cameras[camera_id] = CameraState(camera_id)
        return state

    def watch(self, camera_ids: list[str] | set[str]) -> None:
        now = time.monotonic()
        for camera_id in camera_ids:
            self.watched[camera_id] = now

    def wants_frames_of(self, camera_id: str) -> bool:
        seen = self.watched.get(camera_id)
        return seen is not None and time.monotonic() - seen < WATCH_TTL_S

    def prune_frames(self) -> None:
        """Forget frames of cameras nobody looks at any more: memory follows the wall, not the city."""
        now = time.monotonic()
        for camera_id in [c for c, t in self.watched.items() if now - t > WATCH_TTL_S]:
            self.watched.pop(camera_id, None)
            self.frames.pop(camera_id, None)
            self.detections.pop(camera_id, None)
        FRAMES_HELD.set(len(self.frames))

    def add_audit(self, record: dict[str, Any]) -> None:
        if record["audit_id"] in self.audit_ids:
            return
        if len(self.audit) == self.audit.maxlen:
            self.audit_ids.discard(self.audit[0]["audit_id"])
        self.audit.append(record)
        self.audit_ids.add(record["audit_id"])

    def sync_inventory(self, inventory: InventoryFollower) -> None:
        if inventory.version == self.inventory_version:
            return
        self.inventory_version = inventory.version
        entries = inventory.snapshot()
        for camera_id, entry in entries.items():
            state = self.camera(camera_id)
            state.name, state.site_id, state.enabled, state.in_inventory = (
                entry.name,
                entry.site_id,
                entry.enabled,
                True,
            )
            state.location = entry.location.model_dump() if entry.location else None
            state.tags = tuple(entry.tags)
        for camera_id, state in list(self.cameras.items()):
            if camera_id not in entries:
                state.in_inventory = False


class _Reader:
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

    def start(self) -> _Reader:
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


class ConsoleFeeds:
    """Starts the readers and the producer; `publish_action` and `audit` write back to Kafka."""

    def __init__(self, settings: ConsoleSettings, serde: AvroSerde, health: Health, state: ConsoleState) -> None:
        self.settings, self.serde, self.health, self.state = settings, serde, health, state
        self.instance = settings.instance_id
        self.producer = make_producer(settings.kafka, "console", health)
        self.inventory = InventoryFollower(settings.kafka, serde)
        self._readers: list[_Reader] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- reading ---------------------------------------------------------------------------------

    def _decode(self, message: Message) -> dict[str, Any] | None:
        topic = message.topic() or ""
        try:
            return self.serde.deserialize(topic, SCHEMA_OF[topic], message.value())
        except SerdeError as error:
            UNDECODABLE.labels(message.topic()).inc()
            log.warning("%s[%d]@%d not decodable: %s", message.topic(), message.partition(), message.offset(), error)
            return None

    def _handle_state(self, message: Message) -> None:
        if message.value() is None:
            return  # tombstone on a compacted topic
        record = self._decode(message)
        if record is None:
            return
        topic, state = message.topic(), self.state
        with state.lock:
            if topic == ALERTS:
                state.book.apply_alert(record)
            elif topic == INCIDENT_ACTIONS:
                state.book.apply_action(Action.from_record(record))
            elif topic == CAMERA_ACTIVITY:
                state.camera(record["camera_id"]).apply_activity(record)
            elif topic == CAMERA_STATUS:
                state.camera(record["camera_id"]).apply_status(record)
            elif topic == PLATFORM_EVENTS:
                state.platform_events.append(record)
            elif topic == AUDIT:
                state.add_audit(record)

    def _handle_live(self, message: Message) -> None:
        camera_id = (message.key() or b"").decode(errors="replace")
        state = self.state
        if message.topic() == FRAMES:
            # Every frame tells that its camera is alive; only watched cameras' frames are decoded.
            with state.lock:
                state.camera(camera_id).last_frame_ms = message.timestamp()[1]
                wanted = state.wants_frames_of(camera_id)
            if not wanted:
                return
            record = self._decode(message)
            if record is None:
                return
            waiters = None
            frame = LatestFrame(
                record["jpeg"],
                record["capture_time"],
                record["sequence"],
                record["width"],
                record["height"],
                int(time.time() * 1000),
            )
            with state.lock:
                current = state.frames.get(camera_id)
                if current is None or frame.capture_time_us >= current.capture_time_us:
                    state.frames[camera_id] = frame
                    waiters = state.frame_waiters
            if waiters is not None:
                waiters(camera_id)
        elif message.topic() == DETECTIONS:
            with state.lock:
                wanted = state.wants_frames_of(camera_id)
            if wanted and (record := self._decode(message)) is not None:
                with state.lock:
                    state.detections[camera_id] = {
                        "capture_time_us": record["capture_time"],
                        "sequence": record["sequence"],
                        "objects": [
                            {"class_name": o["class_name"], "score": round(o["score"], 3), "box": o["box"]}
                            for o in record["objects"]
                        ],
                    }
                    waiters = state.frame_waiters
                if waiters is not None:  # the page draws boxes on the frame they belong to, when they come
                    waiters(camera_id)

    def _window_starts(
        self, consumer: Consumer, topics: dict[str, int | None]
    ) -> tuple[list[TopicPartition], dict[tuple[str, int], int]]:
        """Start offsets per partition: `None` = beginning, else the first offset at or after that time (ms)."""
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
                starts += [
                    TopicPartition(t.topic, t.partition, t.offset if t.offset >= 0 else OFFSET_END) for t in found
                ]
        return starts, ends

    def start(self) -> ConsoleFeeds:
        kafka, group = self.settings.kafka, f"cctv-console-{uuid.uuid4().hex[:8]}"
        since = int(time.time() * 1000 - self.settings.incident_window_h * 3_600_000)
        state_consumer = make_consumer(kafka, group + "-state", self.health)
        starts, ends = self._window_starts(
            state_consumer,
            {
                ALERTS: since,
                INCIDENT_ACTIONS: since,
                AUDIT: since,
                CAMERA_ACTIVITY: None,
                CAMERA_STATUS: None,
                PLATFORM_EVENTS: None,
            },
        )
        self._readers.append(_Reader("state", state_consumer, starts, ends, self._handle_state, self.health))
        live_consumer = make_consumer(kafka, group + "-live", self.health, **{"fetch.max.bytes": 128 * 1024 * 1024})
        live = []
        for topic in (FRAMES, DETECTIONS):
            partitions = live_consumer.list_topics(topic, timeout=10).topics[topic].partitions
            live += [TopicPartition(topic, p, OFFSET_END) for p in partitions]
        self._readers.append(_Reader("live", live_consumer, live, {}, self._handle_live, self.health))
        for reader in self._readers:
            reader.start()
        self.inventory.start()
        for target, name in ((self._housekeeping, "housekeeping"), (self._serve_producer, "producer")):
            thread = threading.Thread(target=target, name=f"console-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    @property
    def caught_up(self) -> bool:
        return self.inventory.caught_up.is_set() and all(r.caught_up.is_set() for r in self._readers)

    def _housekeeping(self) -> None:
        next_lag = 0.0
        while not self._stop.wait(1.0):
            self.health.beat()
            with self.state.lock:
                self.state.sync_inventory(self.inventory)
                self.state.prune_frames()
            if self.caught_up and not self.health.ready:
                self.health.set_ready(True)
            if time.monotonic() >= next_lag:
                next_lag = time.monotonic() + self.settings.lag_interval_s
                try:
                    lag = self._pipeline_lag()
                except Exception as error:  # noqa: BLE001 - the lag panel is informative; never stop the loop for it
                    log.warning("pipeline lag not measured: %s", error)
                else:
                    with self.state.lock:
                        self.state.pipeline_lag = lag

    def _pipeline_lag(self) -> dict[str, dict[str, Any]]:
        """Records each pipeline consumer group still has to read (committed offset vs end)."""
        admin = make_admin(self.settings.kafka)
        lag: dict[str, dict[str, Any]] = {}
        for group, topic in self.settings.lag_groups.items():
            future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
            committed = {(tp.topic, tp.partition): tp.offset for tp in future.result(timeout=10).topic_partitions or []}
            if not committed:
                lag[group] = {"topic": topic, "lag": None, "detail": "group has no committed offsets"}
                continue
            total = 0
            consumer = self._readers[0].consumer
            for (t, partition), offset in committed.items():
                if t != topic:
                    continue
                _low, high = consumer.get_watermark_offsets(TopicPartition(t, partition), timeout=5, cached=False)
                total += max(0, high - max(offset, 0))
            lag[group] = {"topic": topic, "lag": total, "detail": None}
        return lag

    def _serve_producer(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.2)

    def stop(self) -> None:
        self._stop.set()
        for reader in self._readers:
            reader.stop()
        self.inventory.stop()
        for thread in self._threads:
            thread.join(5)
        self.producer.flush(10)

    # --- writing ---------------------------------------------------------------------------------

    def publish_action(self, record: dict[str, Any], timeout_s: float = 15.0) -> None:
        """Produce an IncidentAction and wait until Kafka has it (acks=all): an action the operator saw
        succeed is never lost. Raises RuntimeError when Kafka does not confirm in time."""
        value = self.serde.serialize(INCIDENT_ACTIONS, "IncidentAction", record)
        done = threading.Event()
        outcome: list[KafkaError | None] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            outcome.append(error)
            done.set()

        self.producer.produce(INCIDENT_ACTIONS, key=record["alert_id"].encode(), value=value, on_delivery=delivered)
        if not done.wait(timeout_s):
            raise RuntimeError(f"Kafka did not confirm the action within {timeout_s:.0f} s")
        if outcome[0] is not None:
            raise RuntimeError(f"Kafka refused the action: {outcome[0].str()}")

    def audit(
        self,
        actor: str,
        what: str,
        allowed: bool,
        *,
        role: str | None = None,
        camera_id: str | None = None,
        alert_id: str | None = None,
        detail: str | None = None,
        client: str | None = None,
    ) -> dict[str, Any]:
        record = audit_record(
            actor,
            what,
            allowed=allowed,
            instance=self.instance,
            role=role,
            camera_id=camera_id,
            alert_id=alert_id,
            detail=detail,
            client_address=client,
        )

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                AUDIT_FAILED.inc()
                log.error("audit record %s (%s %s) not delivered: %s", record["audit_id"], what, actor, error.str())

        self.producer.produce(
            AUDIT,
            key=actor[:200].encode(),
            on_delivery=delivered,
            value=self.serde.serialize(AUDIT, AUDIT_SCHEMA, record),
        )
        with self.state.lock:
            self.state.add_audit(record)
        return record
