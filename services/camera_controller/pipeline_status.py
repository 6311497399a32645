"""The pipeline's view of each camera -> the Camera resource's status: camera status and activity
(compacted, read from the start) and new alerts are followed into a StatusBoard by every replica (so
a takeover starts warm); the leader writes what changed to the API server at a bounded rate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from libs.kafka import make_consumer
from libs.serde import SerdeError
from libs.service import ServiceRuntime
from libs.topics import ALERTS, CAMERA_ACTIVITY, CAMERA_STATUS
from services.camera_controller.core import StatusBoard, TokenBucket
from services.camera_controller.settings import ControllerSettings

log = logging.getLogger(__name__)

PatchStatus = Callable[[str, str, dict[str, Any]], None]  # (namespace, name, status)


class PipelineStatus:
    def __init__(self, runtime: ServiceRuntime[ControllerSettings], service: str) -> None:
        self.runtime, self.service = runtime, service
        config = runtime.settings.controller
        self.identity = config.identity
        self.board = StatusBoard(refresh_s=config.status_refresh_s)
        self.lock = threading.Lock()  # the follower thread fills the board, the leader's loop reads it
        self.bucket = TokenBucket(config.status_writes_per_s, config.status_burst)

    def forget(self, camera_id: str) -> None:
        with self.lock:
            self.board.forget(camera_id)

    def follow(self, stop: threading.Event) -> None:
        """Latest status and activity (compacted: read from the start) and new alerts, into the board."""
        runtime = self.runtime
        consumer: Consumer = make_consumer(
            runtime.settings.kafka,
            f"{self.service}-{self.identity}",
            runtime.health,
            **{"enable.auto.commit": False},
        )
        starts = ((CAMERA_STATUS, OFFSET_BEGINNING), (CAMERA_ACTIVITY, OFFSET_BEGINNING), (ALERTS, OFFSET_END))
        while not stop.is_set():  # the topics may not exist yet (a fresh cluster): keep asking
            topics = consumer.list_topics(timeout=10).topics
            missing = [t for t, _ in starts if t not in topics or topics[t].error is not None]
            if not missing:
                break
            log.error("status topics %s missing (run `cctv topics create`); retrying in 10 s", missing)
            stop.wait(10)
        else:
            consumer.close()
            return
        consumer.assign([TopicPartition(topic, p, start) for topic, start in starts for p in topics[topic].partitions])
        handlers = {
            CAMERA_STATUS: ("CameraStatus", self.board.on_status),
            CAMERA_ACTIVITY: ("CameraActivity", self.board.on_activity),
            ALERTS: ("Alert", self.board.on_alert),
        }
        try:
            while not stop.is_set():
                for message in consumer.consume(500, 0.5):
                    topic = message.topic()
                    if message.error() or message.value() is None or topic is None:
                        continue
                    schema, handler = handlers[topic]
                    try:
                        record = runtime.serde.deserialize(topic, schema, message.value())
                    except (SerdeError, ValueError) as error:  # someone else's bad record must not stop status
                        log.warning("unreadable %s record at %d: %s", message.topic(), message.offset(), error)
                        continue
                    with self.lock:
                        handler(record)
        finally:
            consumer.close()

    def write(self, owner_of: dict[str, str], resources: dict[str, dict[str, Any]], patch: PatchStatus) -> None:
        """Patch the status of cameras whose view changed (or is due a refresh), within the rate limit."""
        now = time.monotonic()
        with self.lock:
            due = self.board.due(now, set(owner_of))
        for camera_id in due:
            if not self.bucket.take(now):
                return  # the rest waits for the next round
            ref = owner_of.get(camera_id)
            if ref is None:
                continue
            namespace, name = ref.split("/", 1)
            with self.lock:
                view = self.board.views[camera_id].patch()
                self.board.mark_written(camera_id, now)
            resource_state = (resources.get(ref, {}).get("status") or {}).get("state")
            if resource_state in ("INVALID", "DISABLED") and view.get("state") == "STOPPED":
                continue  # keep the more useful reason the controller gave
            patch(namespace, name, view)
