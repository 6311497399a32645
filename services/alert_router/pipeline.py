"""One camera's whole alert path: tracker -> rules -> incidents, with a single JSON-compatible state."""

from __future__ import annotations

import copy
from typing import Any

from .config import CameraConfig, IncidentSettings, SeverityPolicy, TrackerSettings
from .incidents import IncidentTracker
from .model import AlertEvent, FrameDetections
from .rules import RuleEngine
from .tracking import TimeAwareTracker

PIPELINE_STATE_VERSION = 1


class CameraMismatchError(ValueError):
    """A frame was handed to the pipeline of another camera."""


class CameraPipeline:
    """Call `process(frame)` per frame (capture-time order), `expire(now_ms)` on a timer, and persist
    `to_state()` after each call; `from_state()` resumes exactly where a previous worker stopped."""

    def __init__(
        self,
        camera: CameraConfig,
        tracker_settings: TrackerSettings | None = None,
        incident_settings: IncidentSettings | None = None,
        severity_policy: SeverityPolicy | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        if state is not None and state.get("version") != PIPELINE_STATE_VERSION:
            raise ValueError(
                f"camera {camera.camera_id!r}: stored alert state version {state.get('version')!r} is not supported "
                f"(expected {PIPELINE_STATE_VERSION}); delete the table entry to start fresh"
            )
        self.camera = camera
        # Own a private copy: callers may keep (and later compare) the dict they stored.
        state = copy.deepcopy(state)
        tracker_settings = tracker_settings or TrackerSettings()
        try:
            self.tracker = (
                TimeAwareTracker.from_state(state["tracker"], tracker_settings)
                if state is not None
                else TimeAwareTracker(tracker_settings)
            )
            self.rules = RuleEngine(camera, state["rules"] if state is not None else None)
            self.incidents = IncidentTracker(
                camera_id=camera.camera_id,
                site_id=camera.site_id,
                camera_tags=camera.tags,
                settings=incident_settings,
                severity_policy=severity_policy,
                rule_severity={f"{z.name}/{r.key}": r.severity for z in camera.zones for r in z.rules},
                state=state["incidents"] if state is not None else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(
                f"camera {camera.camera_id!r}: stored alert state is unreadable ({type(error).__name__}: {error}); "
                "delete the table entry to start fresh"
            ) from error

    def process(self, frame: FrameDetections) -> list[AlertEvent]:
        if frame.camera_id != self.camera.camera_id:
            raise CameraMismatchError(
                f"frame of camera {frame.camera_id!r} handed to the pipeline of camera {self.camera.camera_id!r}"
            )
        previous_time = self.tracker.last_time_ms
        if previous_time is not None and frame.capture_time_ms <= previous_time:
            # Redelivered or out-of-order frame: already accounted for; replaying it would corrupt timers.
            return []
        seen = self.tracker.update(frame)
        results = self.rules.evaluate(frame.capture_time_ms, frame.aspect, seen, self.tracker.active_track_ids())
        return self.incidents.observe(frame.capture_time_ms, frame.frame_ref, results)

    def expire(self, now_ms: int) -> list[AlertEvent]:
        """End incidents left open by a camera that stopped sending frames (call with wall-clock ms)."""
        return self.incidents.expire(now_ms)

    def to_state(self) -> dict[str, Any]:
        """A deep copy of all state, JSON-compatible (str keys, numbers, strings, lists, None)."""
        return copy.deepcopy(
            {
                "version": PIPELINE_STATE_VERSION,
                "tracker": self.tracker.to_state(),
                "rules": self.rules.to_state(),
                "incidents": self.incidents.to_state(),
            }
        )
