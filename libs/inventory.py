"""Follow the camera inventory (compacted cctv.cameras.v1) in the background: every service that needs
per-camera configuration (sampling policy, zones and rules) reads it here, always the whole topic."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from libs.cameras import CameraEntry
from libs.kafka import high_watermark
from libs.serde import AvroSerde, SerdeError
from libs.settings import KafkaSettings
from libs.topics import CAMERAS

log = logging.getLogger(__name__)


class InventoryFollower:
    """Reads every partition of the inventory from the beginning, then keeps following it.

    `caught_up` is set once the end that existed at start has been reached, so a service can wait for
    a complete view before it makes decisions. `version` increases on every change.
    """

    def __init__(self, settings: KafkaSettings, serde: AvroSerde, topic: str = CAMERAS) -> None:
        self.topic = topic
        self.serde = serde
        self.cameras: dict[str, CameraEntry] = {}
        self.version = 0
        self.invalid = 0
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._consumer = Consumer(settings.client_config() | {
            "group.id": f"cctv-inventory-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
            "isolation.level": "read_committed",
        })
        metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"{topic}: {metadata.error.str()} (run `cctv topics create`)")
        partitions = list(metadata.partitions)
        self._ends = {p: high_watermark(self._consumer, topic, p) for p in partitions}
        self._pending = {p for p, end in self._ends.items() if end > 0}
        self._history: dict[str, tuple[int | None, bytes | None]] = {}  # latest per camera while catching up
        if not self._pending:
            self.caught_up.set()
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self._thread: threading.Thread | None = None

    def poll_once(self, timeout_s: float = 0.2) -> None:
        # Batches, and while catching up only the latest raw record per camera: a city inventory
        # (110,000 cameras, plus superseded records not compacted yet) is decoded once per camera.
        for message in self._consumer.consume(1000, timeout_s):
            if message.error():
                continue
            camera_id = (message.key() or b"").decode(errors="replace")
            if self._pending:
                self._history[camera_id] = (message.offset(), message.value())
            else:
                self._apply(camera_id, message.offset(), message.value())
        if self._pending:
            # Transaction markers occupy offsets too, so "caught up" is the position reaching the end.
            positions = self._consumer.position([TopicPartition(self.topic, p) for p in self._pending])
            self._pending -= {tp.partition for tp in positions if (tp.offset or 0) >= self._ends[tp.partition]}
            if not self._pending:
                for camera_id, (offset, value) in self._history.items():
                    self._apply(camera_id, offset, value)
                self._history.clear()
                self.caught_up.set()

    def _apply(self, camera_id: str, offset: int | None, value: bytes | None) -> None:
        if value is None:
            with self._lock:
                if self.cameras.pop(camera_id, None) is not None:
                    self.version += 1
            return
        try:
            entry = CameraEntry.from_record(self.serde.deserialize(self.topic, "CameraConfig", value))
        except (SerdeError, ValueError) as error:
            self.invalid += 1
            log.error("inventory record for %s at offset %s ignored: %s", camera_id, offset, error)
        else:
            with self._lock:
                self.cameras[entry.camera_id] = entry
                self.version += 1

    def read_to_end(self, timeout_s: float = 30.0) -> dict[str, CameraEntry]:
        deadline = time.monotonic() + timeout_s
        while not self.caught_up.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {self.topic} to its end within {timeout_s:.0f} s")
            self.poll_once()
        return self.snapshot()

    def start(self) -> "InventoryFollower":
        def run() -> None:
            while not self._stop.is_set():
                self.poll_once(0.5)
            self._consumer.close()

        self._thread = threading.Thread(target=run, name="inventory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        else:
            self._consumer.close()

    def get(self, camera_id: str) -> CameraEntry | None:
        with self._lock:
            return self.cameras.get(camera_id)

    def snapshot(self) -> dict[str, CameraEntry]:
        with self._lock:
            return dict(self.cameras)
