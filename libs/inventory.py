"""Follow the camera inventory (compacted cctv.cameras.v1) in the background: every service that needs
per-camera configuration (sampling policy, zones and rules) reads it here, always the whole topic."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Message

from libs.cameras import CameraEntry
from libs.kafka import assign_from_beginning, decode_latest, make_reader
from libs.serde import AvroSerde
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
        self._consumer = make_reader(settings, "inventory", **{"isolation.level": "read_committed"})
        self._catch_up = assign_from_beginning(self._consumer, topic)
        # While catching up, only the latest raw record per camera (decoded once, at the end).
        self._history: dict[str, Message] = {}
        if not self._catch_up.pending:
            self.caught_up.set()
        self._thread: threading.Thread | None = None

    def poll_once(self, timeout_s: float = 0.2) -> None:
        # Batches, and while catching up only the latest raw record per camera: a city inventory
        # (110,000 cameras, plus superseded records not compacted yet) is decoded once per camera.
        for message in self._consumer.consume(1000, timeout_s):
            if message.error():
                continue
            if self._catch_up.pending:
                self._history[(message.key() or b"").decode(errors="replace")] = message
            else:
                self._apply(message)
        if self._catch_up.pending:
            self._catch_up.reached()
            if not self._catch_up.pending:
                for message in self._history.values():
                    self._apply(message)
                self._history.clear()
                self.caught_up.set()

    def _apply(self, message: Message) -> None:
        decoded = decode_latest(self.serde, self.topic, "CameraConfig", message, self._invalid)
        if decoded is None:
            return
        camera_id, record = decoded
        if record is None:
            with self._lock:
                if self.cameras.pop(camera_id, None) is not None:
                    self.version += 1
            return
        try:
            entry = CameraEntry.from_record(record)
        except ValueError as error:
            self._invalid(message, error)
        else:
            with self._lock:
                self.cameras[entry.camera_id] = entry
                self.version += 1

    def _invalid(self, message: Message, error: Exception) -> None:
        self.invalid += 1
        log.error(
            "inventory record for %s at offset %s ignored: %s",
            (message.key() or b"").decode(errors="replace"),
            message.offset(),
            error,
        )

    def read_to_end(self, timeout_s: float = 30.0) -> dict[str, CameraEntry]:
        deadline = time.monotonic() + timeout_s
        while not self.caught_up.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {self.topic} to its end within {timeout_s:.0f} s")
            self.poll_once()
        return self.snapshot()

    def start(self) -> InventoryFollower:
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
