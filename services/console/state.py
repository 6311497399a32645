"""What one console replica holds in memory, folded from the topics by feeds.py: the incident book,
one entry per camera, the latest frame and detections of watched cameras only, and short tails of
platform events and audit records. Knows nothing of Kafka: records arrive decoded."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Gauge

from libs.inventory import InventoryFollower
from libs.topics import ALERTS, AUDIT, CAMERA_ACTIVITY, CAMERA_STATUS, INCIDENT_ACTIONS, PLATFORM_EVENTS
from services.console.incidents import Action, IncidentBook
from services.console.wall import CameraState

FRAMES_HELD = Gauge("cctv_console_frames_held", "Latest frames held in memory (one per watched camera)")
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

    def apply(self, topic: str, record: dict[str, Any]) -> None:
        """Fold one decoded record of a state topic (alerts, actions, camera activity/status, platform
        events, audit) in; the caller holds the lock."""
        if topic == ALERTS:
            self.book.apply_alert(record)
        elif topic == INCIDENT_ACTIONS:
            self.book.apply_action(Action.from_record(record))
        elif topic == CAMERA_ACTIVITY:
            self.camera(record["camera_id"]).apply_activity(record)
        elif topic == CAMERA_STATUS:
            self.camera(record["camera_id"]).apply_status(record)
        elif topic == PLATFORM_EVENTS:
            self.platform_events.append(record)
        elif topic == AUDIT:
            self.add_audit(record)

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
