"""JSON views the API returns, built from ConsoleState under its lock. Pure over the state objects."""

from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from typing import Any

from services.console.state import ConsoleState
from services.console.users import User
from services.console.wall import maintenance_alerts, select_wall


class LatencyBook:
    """Capture→pixels samples the browsers report (ms), for the footer and the benchmark."""

    def __init__(self, keep: int = 1000) -> None:
        self.samples: deque[float] = deque(maxlen=keep)

    def add(self, samples: list[float]) -> None:
        self.samples.extend(s for s in samples if 0 <= s < 600_000)

    def summary(self) -> dict[str, Any]:
        values = sorted(self.samples)
        if not values:
            return {"count": 0, "p50_ms": None, "p95_ms": None}
        return {
            "count": len(values),
            "p50_ms": round(statistics.median(values), 1),
            "p95_ms": round(values[min(len(values) - 1, int(len(values) * 0.95))], 1),
        }


def allowed_cameras(user: User) -> set[str] | None:
    return None if user.cameras is None else set(user.cameras)


def wall_view(
    state: ConsoleState, user: User, max_tiles: int, latency: LatencyBook, silent_after_s: float
) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    with state.lock:
        opened = state.book.select("open")
        selection = select_wall(state.cameras, opened, allowed_cameras(user), max_tiles)
        state.watch(selection.tiles)
        tiles = []
        for camera_id in selection.tiles:
            camera = state.camera(camera_id)
            frame = state.frames.get(camera_id)
            incident = selection.incident_of.get(camera_id)
            tiles.append(
                camera.summary()
                | {
                    "incident": incident.summary() if incident else None,
                    "frame": None
                    if frame is None
                    else {
                        "capture_time_us": frame.capture_time_us,
                        "sequence": frame.sequence,
                        "width": frame.width,
                        "height": frame.height,
                    },
                    "detections": state.detections.get(camera_id),
                }
            )
        visible_open = [i for i in opened if user.can_see(i.camera_id)]
        return {
            "tiles": tiles,
            "idle_count": selection.idle_count,
            "open_incidents": len(visible_open),
            "new_incidents": sum(1 for i in visible_open if i.status == "new"),
            "platform": platform_view(state, limit=5),
            "maintenance": len(
                maintenance_alerts({c: s for c, s in state.cameras.items() if user.can_see(c)}, now_ms, silent_after_s)
            ),
            "latency": latency.summary(),
            "generated_at_ms": now_ms,
        }


def platform_view(state: ConsoleState, limit: int = 20) -> dict[str, Any]:
    """Latest lifecycle event per service, and the most recent restarts/give-ups for the header."""
    latest: dict[str, dict[str, Any]] = {}
    for event in state.platform_events:
        latest[event["service"]] = event
    trouble = [e for e in state.platform_events if e["event"] in ("EXITED", "RESTARTING", "GAVE_UP")]
    return {"services": sorted(latest.values(), key=lambda e: e["service"]), "recent_trouble": trouble[-limit:][::-1]}


def health_view(state: ConsoleState, user: User, silent_after_s: float) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    with state.lock:
        cameras = {c: s for c, s in state.cameras.items() if s.in_inventory and user.can_see(c)}
        counts = Counter(s.connection or "UNKNOWN" for s in cameras.values())
        problems = [s.summary() for s in cameras.values() if s.connection not in ("ONLINE", None)]
        return {
            "connection_counts": dict(counts),
            "total": len(cameras),
            "problems": sorted(problems, key=lambda p: p["connection_since_ms"] or 0),
            "maintenance": maintenance_alerts(cameras, now_ms, silent_after_s),
            "pipeline_lag": dict(state.pipeline_lag),
            "platform": platform_view(state),
            "generated_at_ms": now_ms,
        }
