"""Turns per-frame rule results into one alert per incident: new -> update (rate limited) -> end."""

from __future__ import annotations

import uuid
from typing import Any

from .config import IncidentSettings, SeverityPolicy
from .model import AlertEvent, AlertKind, FrameRef, Severity, TrackedBox
from .rules.engine import RuleResult

# Track ids remembered per incident (the newest ones).
MAX_TRACK_IDS = 50
# Fixed namespace: alert ids are uuid5(namespace, camera|zone|rule|start time) and must never change.
ALERT_ID_NAMESPACE = uuid.UUID("6f1c3c0e-6a8e-5d7b-9a43-2f7c9d0b1e55")


def alert_id_for(camera_id: str, zone: str, rule: str, started_at_ms: int) -> str:
    """Deterministic id: replaying the same frames yields the same id for the same incident."""
    return str(uuid.uuid5(ALERT_ID_NAMESPACE, f"{camera_id}|{zone}|{rule}|{started_at_ms}"))


def _box_to_state(box: TrackedBox) -> list[Any]:
    return [box.track_id, box.class_name, box.score, box.x1, box.y1, box.x2, box.y2]


def _box_from_state(data: list[Any]) -> TrackedBox:
    track_id, class_name, score, x1, y1, x2, y2 = data
    return TrackedBox(float(x1), float(y1), float(x2), float(y2), int(track_id), str(class_name), float(score))


class IncidentTracker:
    """Open incidents of one camera, keyed by 'zone/rule'. Everything is driven by frame capture times."""

    def __init__(
        self,
        camera_id: str,
        site_id: str,
        camera_tags: list[str],
        settings: IncidentSettings | None = None,
        severity_policy: SeverityPolicy | None = None,
        rule_severity: dict[str, Severity | None] | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.site_id = site_id
        self.camera_tags = list(camera_tags)
        self.settings = settings or IncidentSettings()
        self.severity_policy = severity_policy or SeverityPolicy()
        # 'zone/rule' -> explicit severity configured on the rule (None = use the policy).
        self.rule_severity = rule_severity or {}
        self.open: dict[str, dict[str, Any]] = {k: dict(v) for k, v in ((state or {}).get("open") or {}).items()}

    def to_state(self) -> dict[str, Any]:
        return {"open": self.open}

    def observe(self, now_ms: int, frame_ref: FrameRef, results: list[RuleResult]) -> list[AlertEvent]:
        """Feed one frame's rule results; returns the events this frame causes (sorted by rule key)."""
        events: list[AlertEvent] = []
        active = {r.key: r for r in results if r.active}
        for key in sorted(active):
            result = active[key]
            boxes = [t.box() for t in result.tracks]
            incident = self.open.get(key)
            if incident is None:
                severity = self.severity_policy.severity_for(
                    result.rule_type, self.camera_tags, self.rule_severity.get(key)
                )
                incident = {
                    "alert_id": alert_id_for(self.camera_id, result.zone, result.rule, now_ms),
                    "zone": result.zone,
                    "rule": result.rule,
                    "rule_type": result.rule_type,
                    "severity": str(severity),
                    "started_at": now_ms,
                    "last_emit_ms": now_ms,
                    "track_ids": sorted({t.track_id for t in result.tracks}),
                }
                self.open[key] = incident
                self._record(incident, now_ms, frame_ref, boxes, result.description)
                events.append(self._event(incident, AlertKind.NEW, now_ms))
                continue
            known = incident["track_ids"]
            # Oldest ids drop off first, so a day-long crowd cannot grow the state (and messages) without bound.
            incident["track_ids"] = (known + sorted({t.track_id for t in result.tracks} - set(known)))[-MAX_TRACK_IDS:]
            self._record(incident, now_ms, frame_ref, boxes, result.description)
            if now_ms - incident["last_emit_ms"] >= self.settings.update_interval_s * 1000.0:
                incident["last_emit_ms"] = now_ms
                events.append(self._event(incident, AlertKind.UPDATE, now_ms))
        # Incidents whose rule is false (or gone from the config) end after the grace period.
        events.extend(self._end_quiet(now_ms, still_active=set(active)))
        return events

    def expire(self, now_ms: int) -> list[AlertEvent]:
        """End incidents whose grace ran out while no frames arrived (camera silent or all frames skipped)."""
        return self._end_quiet(now_ms, still_active=set())

    # ----------------------------------------------------------------- internals
    @staticmethod
    def _record(incident: dict[str, Any], now_ms: int, frame_ref: FrameRef, boxes: list[TrackedBox], text: str) -> None:
        incident["last_active_ms"] = now_ms
        incident["frame_ref"] = [frame_ref.topic, frame_ref.partition, frame_ref.offset]
        incident["boxes"] = [_box_to_state(b) for b in boxes]
        incident["description"] = text

    def _end_quiet(self, now_ms: int, still_active: set[str]) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        grace_ms = self.settings.end_grace_s * 1000.0
        for key in sorted(self.open):
            incident = self.open[key]
            if key in still_active or now_ms - incident["last_active_ms"] < grace_ms:
                continue
            events.append(self._event(incident, AlertKind.END, now_ms))
            del self.open[key]
        return events

    def _event(self, incident: dict[str, Any], kind: AlertKind, now_ms: int) -> AlertEvent:
        topic, partition, offset = incident["frame_ref"]
        return AlertEvent(
            kind=kind,
            alert_id=incident["alert_id"],
            rule=incident["rule"],
            rule_type=incident["rule_type"],
            zone=incident["zone"],
            camera_id=self.camera_id,
            site_id=self.site_id,
            severity=Severity(incident["severity"]),
            started_at=incident["started_at"],
            detected_at=now_ms,
            ended_at=incident["last_active_ms"] if kind is AlertKind.END else None,
            track_ids=list(incident["track_ids"]),
            boxes=[_box_from_state(b) for b in incident["boxes"]],
            frame_ref=FrameRef(topic, int(partition), int(offset)),
            description=incident["description"],
        )
