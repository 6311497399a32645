"""The console's Kafka side: background readers (readers.py) that fold the topics into ConsoleState
(state.py), and the producer of incident actions and audit records. Every replica reads everything itself
(no consumer group), so all replicas converge on the same state; nothing lives only in one replica's memory."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, Message, TopicPartition
from prometheus_client import Counter

from libs.audit import SCHEMA as AUDIT_SCHEMA
from libs.audit import audit_record
from libs.health import Health
from libs.inventory import InventoryFollower
from libs.kafka import make_admin, make_consumer, make_producer
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
from services.console.readers import PartitionReader, live_starts, window_starts
from services.console.settings import ConsoleSettings
from services.console.state import ConsoleState, LatestFrame

__all__ = ["ConsoleFeeds", "ConsoleState", "LatestFrame"]

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
NEEDED_TOPICS = tuple(SCHEMA_OF)  # every topic the console reads or writes: all must exist at start
UNDECODABLE = Counter("cctv_console_undecodable_records_total", "Records the console could not decode", ["topic"])
AUDIT_FAILED = Counter("cctv_console_audit_delivery_failures_total", "Audit records Kafka did not accept")


class ConsoleFeeds:
    """Starts the readers and the producer; `publish_action` and `audit` write back to Kafka."""

    def __init__(self, settings: ConsoleSettings, serde: AvroSerde, health: Health, state: ConsoleState) -> None:
        self.settings, self.serde, self.health, self.state = settings, serde, health, state
        self.instance = settings.instance_id
        self.producer = make_producer(settings.kafka, "console", health)
        self.inventory = InventoryFollower(settings.kafka, serde)
        self._readers: list[PartitionReader] = []
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
        with self.state.lock:
            self.state.apply(message.topic() or "", record)

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

    def start(self) -> ConsoleFeeds:
        kafka, group = self.settings.kafka, f"cctv-console-{uuid.uuid4().hex[:8]}"
        since = int(time.time() * 1000 - self.settings.incident_window_h * 3_600_000)
        state_consumer = make_consumer(kafka, group + "-state", self.health)
        starts, ends = window_starts(
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
        self._readers.append(PartitionReader("state", state_consumer, starts, ends, self._handle_state, self.health))
        live_consumer = make_consumer(kafka, group + "-live", self.health, **{"fetch.max.bytes": 128 * 1024 * 1024})
        live = live_starts(live_consumer, (FRAMES, DETECTIONS))
        self._readers.append(PartitionReader("live", live_consumer, live, {}, self._handle_live, self.health))
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
