"""Per-camera state as the console sees it (inventory + activity + connection status + last frame),
the wall's selection and order, maintenance detection and distance queries. Pure functions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from services.console.incidents import SEVERITY_RANK, Incident

EARTH_RADIUS_M = 6_371_008.8


@dataclass
class CameraState:
    camera_id: str
    name: str = ""
    site_id: str = ""
    location: dict[str, float] | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True
    in_inventory: bool = False
    activity: str | None = None  # ACTIVE | IDLE | None (never reported)
    activity_since_us: int | None = None
    motion_score: float = 0.0
    connection: str | None = None  # CONNECTING | ONLINE | RECONNECTING | FAILED | STOPPED
    connection_reason: str | None = None
    connection_since_ms: int | None = None
    status_at_ms: int | None = None
    last_frame_ms: int | None = None  # Kafka timestamp of its latest frame (seen without decoding it)

    def apply_activity(self, record: dict[str, Any]) -> None:
        self.activity = record["state"]
        self.activity_since_us = record["since"]
        self.motion_score = float(record.get("motion_score") or 0.0)

    def apply_status(self, record: dict[str, Any]) -> None:
        if record["state"] != self.connection or self.connection_since_ms is None:
            self.connection_since_ms = record["timestamp"]
        self.connection = record["state"]
        self.connection_reason = record.get("reason")
        self.status_at_ms = record["timestamp"]

    def summary(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "name": self.name or self.camera_id,
            "site_id": self.site_id,
            "location": self.location,
            "tags": list(self.tags),
            "enabled": self.enabled,
            "in_inventory": self.in_inventory,
            "activity": self.activity or "UNKNOWN",
            "activity_since_us": self.activity_since_us,
            "motion_score": round(self.motion_score, 4),
            "connection": self.connection or "UNKNOWN",
            "connection_reason": self.connection_reason,
            "connection_since_ms": self.connection_since_ms,
            "last_frame_ms": self.last_frame_ms,
        }


@dataclass(frozen=True)
class WallSelection:
    tiles: list[str]  # camera ids in display order
    idle_count: int
    incident_of: dict[str, Incident]  # camera id -> its most pressing open incident


def select_wall(
    cameras: dict[str, CameraState], open_incidents: list[Incident], allowed: set[str] | None, max_tiles: int = 64
) -> WallSelection:
    """Selective monitoring: only cameras that are ACTIVE or have an open incident get a tile.

    Order: cameras with open incidents by severity (then the newest incident first), then active
    cameras, most recently activated first. Everything else collapses into `idle_count`."""
    pressing: dict[str, Incident] = {}
    for incident in open_incidents:
        if allowed is not None and incident.camera_id not in allowed:
            continue
        best = pressing.get(incident.camera_id)
        if best is None or _urgency(incident) > _urgency(best):
            pressing[incident.camera_id] = incident
    with_incident = sorted(pressing, key=lambda c: _urgency(pressing[c]), reverse=True)
    active = sorted(
        (
            c
            for c, s in cameras.items()
            if s.activity == "ACTIVE" and s.in_inventory and c not in pressing and (allowed is None or c in allowed)
        ),
        key=lambda c: (-(cameras[c].activity_since_us or 0), c),
    )
    tiles = (with_incident + active)[:max_tiles]
    # Removed cameras (tombstoned, but with old status records) neither get tiles nor count as idle.
    visible_total = len(
        {c for c, s in cameras.items() if s.in_inventory and (allowed is None or c in allowed)} | set(pressing)
    )
    return WallSelection(tiles=tiles, idle_count=max(0, visible_total - len(tiles)), incident_of=pressing)


def _urgency(incident: Incident) -> tuple[int, int, int]:
    return (SEVERITY_RANK.get(incident.severity, 0), 1 if incident.status == "new" else 0, incident.last_step_at_us)


def maintenance_alerts(cameras: dict[str, CameraState], now_ms: int, silent_after_s: float) -> list[dict[str, Any]]:
    """Cameras that need a technician: connection failed/reconnecting for longer than the threshold,
    or 'online' but no frame for longer than it (a covered or frozen camera still connects: tamper)."""
    threshold_ms = silent_after_s * 1000
    found = []
    for camera in cameras.values():
        if not camera.enabled or not camera.in_inventory:
            continue
        since = camera.connection_since_ms
        if camera.connection in ("FAILED", "RECONNECTING") and since is not None and now_ms - since > threshold_ms:
            found.append(
                {
                    "camera_id": camera.camera_id,
                    "kind": "offline",
                    "since_ms": since,
                    "reason": f"{camera.connection.lower()}: {camera.connection_reason or 'no reason given'}",
                }
            )
        elif camera.connection == "ONLINE":
            last = camera.last_frame_ms or since
            if last is not None and now_ms - last > threshold_ms:
                found.append(
                    {
                        "camera_id": camera.camera_id,
                        "kind": "silent",
                        "since_ms": last,
                        "reason": f"online but no frame for {(now_ms - last) / 1000:.0f} s (tamper or frozen?)",
                    }
                )
    return sorted(found, key=lambda m: m["since_ms"])


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


def cameras_within(
    cameras: list[CameraState], lat: float, lon: float, radius_m: float
) -> list[tuple[CameraState, float]]:
    """Cameras with a location within `radius_m` of the point, nearest first."""
    near = []
    for camera in cameras:
        if camera.location is None:
            continue
        d = distance_m(lat, lon, camera.location["lat"], camera.location["lon"])
        if d <= radius_m:
            near.append((camera, d))
    return sorted(near, key=lambda pair: pair[1])
