"""The incident book: incidents folded from alert steps (cctv.alerts.v1) and operators' actions
(cctv.incident-actions.v1). Pure: knows nothing of Kafka or HTTP, so every replica that reads the same
records computes the same state, in whatever order the two topics interleave."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

SEVERITY_RANK = {"LOW": 0, "MEDIUM": 1, "HIGH": 2, "CRITICAL": 3}
ACTIONS = ("acknowledge", "assign", "comment", "false_alarm", "close", "reopen")
COMMENT_MAX = 2000


class ActionRejected(Exception):
    """An action that cannot apply; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Action:
    action_id: str
    alert_id: str
    action: str  # one of ACTIONS
    operator: str
    timestamp_ms: int
    role: str = ""
    assignee: str | None = None
    comment: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Action:
        return cls(
            action_id=record["action_id"],
            alert_id=record["alert_id"],
            action=record["action"].lower(),
            operator=record["operator"],
            timestamp_ms=record["timestamp"],
            role=record.get("role") or "",
            assignee=record.get("assignee"),
            comment=record.get("comment"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "action": self.action,
            "operator": self.operator,
            "role": self.role,
            "assignee": self.assignee,
            "comment": self.comment,
            "timestamp_ms": self.timestamp_ms,
        }


@dataclass
class Incident:
    alert_id: str
    camera_id: str
    camera_name: str
    site_id: str
    event_type: str
    rule_id: str
    zone_id: str
    zone_name: str
    severity: str
    description: str
    started_at_us: int
    last_step_at_us: int
    location: dict[str, float] | None = None
    ended_at_us: int | None = None
    steps: set[tuple[str, int]] = field(default_factory=set)
    objects: list[dict[str, Any]] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    snapshot_jpeg: bytes | None = None
    actions: dict[str, Action] = field(default_factory=dict)
    # Derived from actions by _refold():
    status: str = "new"  # new | acknowledged | closed
    assignee: str | None = None
    false_alarm: bool = False
    acknowledged_by: str | None = None
    closed_by: str | None = None
    closed_at_ms: int | None = None

    @property
    def open(self) -> bool:
        return self.status != "closed"

    @property
    def alert_active(self) -> bool:
        """The rule still fires (no END step yet)."""
        return self.ended_at_us is None

    def ordered_actions(self) -> list[Action]:
        return sorted(self.actions.values(), key=lambda a: (a.timestamp_ms, a.action_id))

    def refold(self) -> None:
        """Recompute the operator-facing state from every known action, in time order (actions from
        several replicas may arrive in any order; folding by timestamp makes the result the same)."""
        self.status, self.assignee, self.false_alarm = "new", None, False
        self.acknowledged_by = self.closed_by = None
        self.closed_at_ms = None
        for action in self.ordered_actions():
            if action.action == "acknowledge":
                if self.status == "new":
                    self.status, self.acknowledged_by = "acknowledged", action.operator
            elif action.action == "assign":
                self.assignee = action.assignee
                if self.status == "new":
                    self.status, self.acknowledged_by = "acknowledged", action.operator
            elif action.action in ("close", "false_alarm"):
                self.status, self.closed_by, self.closed_at_ms = "closed", action.operator, action.timestamp_ms
                self.false_alarm = self.false_alarm or action.action == "false_alarm"
            elif action.action == "reopen":
                self.status, self.false_alarm = "acknowledged", False
                self.closed_by = self.closed_at_ms = None

    def summary(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "camera_id": self.camera_id,
            "camera_name": self.camera_name,
            "site_id": self.site_id,
            "event_type": self.event_type,
            "rule_id": self.rule_id,
            "zone_id": self.zone_id,
            "zone_name": self.zone_name,
            "severity": self.severity,
            "description": self.description,
            "started_at_us": self.started_at_us,
            "last_step_at_us": self.last_step_at_us,
            "ended_at_us": self.ended_at_us,
            "alert_active": self.alert_active,
            "status": self.status,
            "assignee": self.assignee,
            "false_alarm": self.false_alarm,
            "acknowledged_by": self.acknowledged_by,
            "closed_by": self.closed_by,
            "closed_at_ms": self.closed_at_ms,
            "location": self.location,
            "objects": self.objects,
            "destinations": self.destinations,
            "has_snapshot": self.snapshot_jpeg is not None,
        }

    def detail(self) -> dict[str, Any]:
        return self.summary() | {"actions": [a.to_json() for a in self.ordered_actions()]}


def validate_action(incident: Incident, action: str, assignee: str | None, comment: str | None) -> None:
    """Raise ActionRejected (with the HTTP status) when `action` cannot apply to the incident now."""
    if action not in ACTIONS:
        raise ActionRejected(422, f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if comment is not None and len(comment) > COMMENT_MAX:
        raise ActionRejected(422, f"comment is {len(comment)} characters; at most {COMMENT_MAX}")
    if action == "assign" and not (assignee or "").strip():
        raise ActionRejected(422, "assign needs an 'assignee'")
    if action == "comment" and not (comment or "").strip():
        raise ActionRejected(422, "comment needs a non-empty 'comment'")
    if action == "reopen":
        if incident.open:
            raise ActionRejected(409, f"incident {incident.alert_id} is not closed")
    elif incident.status == "closed" and action != "comment":
        raise ActionRejected(409, f"incident {incident.alert_id} is closed; reopen it first")


class IncidentBook:
    """Open incidents plus a bounded tail of closed ones; memory stays bounded at `max_incidents`.

    Actions that arrive before their alert (the two topics are read concurrently) wait in a bounded
    pending map and apply when the alert arrives."""

    def __init__(self, max_incidents: int = 5000, max_pending_actions: int = 20000) -> None:
        self.max_incidents = max_incidents
        self.max_pending_actions = max_pending_actions
        self.incidents: OrderedDict[str, Incident] = OrderedDict()
        self._pending: OrderedDict[str, dict[str, Action]] = OrderedDict()
        self._pending_count = 0
        self._counted_false_alarms: set[str] = set()
        self.false_alarms: Counter[tuple[str, str, str]] = Counter()  # (camera, zone, rule) -> count
        self.evicted = 0

    def apply_alert(self, record: dict[str, Any]) -> tuple[Incident, bool]:
        """Fold one alert step in. Returns the incident and whether it is new to this book."""
        alert_id = record["alert_id"]
        incident = self.incidents.get(alert_id)
        created = incident is None
        if incident is None:
            incident = Incident(
                alert_id=alert_id,
                camera_id=record["camera_id"],
                camera_name=record.get("camera_name") or "",
                site_id=record.get("site_id") or "",
                event_type=record["event_type"],
                rule_id=record["rule_id"],
                zone_id=record["zone_id"],
                zone_name=record.get("zone_name") or "",
                severity=record["severity"],
                description=record.get("description") or "",
                started_at_us=record["started_at"],
                last_step_at_us=record["detected_at"],
                location=record.get("location"),
            )
            self.incidents[alert_id] = incident
            for action in self._pending.pop(alert_id, {}).values():
                self._pending_count -= 1
                self._add_action(incident, action)
            incident.refold()
            self._evict()
        step = (record["kind"], int(record.get("sequence") or 0))
        if step in incident.steps:
            return incident, False  # replayed step (at-least-once upstream)
        incident.steps.add(step)
        if record["detected_at"] >= incident.last_step_at_us or record["kind"] == "END":
            incident.last_step_at_us = max(incident.last_step_at_us, record["detected_at"])
            incident.description = record.get("description") or incident.description
            if record.get("objects"):
                incident.objects = list(record["objects"])
            if record.get("snapshot_jpeg") and incident.open:
                incident.snapshot_jpeg = record["snapshot_jpeg"]
        if SEVERITY_RANK.get(record["severity"], 0) > SEVERITY_RANK.get(incident.severity, 0):
            incident.severity = record["severity"]
        incident.destinations = sorted(set(incident.destinations) | set(record.get("destinations") or []))
        if record["kind"] == "END":
            incident.ended_at_us = record.get("ended_at") or record["detected_at"]
        return incident, created

    def apply_action(self, action: Action) -> Incident | None:
        """Fold one action in (idempotent on action_id). None when its alert is not known (yet)."""
        incident = self.incidents.get(action.alert_id)
        if incident is None:
            waiting = self._pending.setdefault(action.alert_id, {})
            if action.action_id not in waiting:
                waiting[action.action_id] = action
                self._pending_count += 1
            while self._pending_count > self.max_pending_actions and self._pending:
                _, dropped = self._pending.popitem(last=False)
                self._pending_count -= len(dropped)
            return None
        if action.action_id not in incident.actions:
            self._add_action(incident, action)
            incident.refold()
        return incident

    def _add_action(self, incident: Incident, action: Action) -> None:
        incident.actions[action.action_id] = action
        if action.action == "false_alarm" and action.action_id not in self._counted_false_alarms:
            self._counted_false_alarms.add(action.action_id)
            self.false_alarms[(incident.camera_id, incident.zone_id, incident.rule_id)] += 1

    def _evict(self) -> None:
        """Over the bound: drop the oldest closed incidents first, then the oldest open ones."""
        if len(self.incidents) <= self.max_incidents:
            return
        for alert_id in [a for a, i in self.incidents.items() if not i.open]:
            if len(self.incidents) <= self.max_incidents:
                return
            del self.incidents[alert_id]
            self.evicted += 1
        while len(self.incidents) > self.max_incidents:
            self.incidents.popitem(last=False)
            self.evicted += 1

    def get(self, alert_id: str) -> Incident | None:
        return self.incidents.get(alert_id)

    def select(
        self, state: str = "open", cameras: set[str] | None = None, camera_id: str | None = None
    ) -> list[Incident]:
        """Incidents in the operator's order: open ones by severity, newest first; `cameras` restricts."""
        chosen = [
            i
            for i in self.incidents.values()
            if (state == "all" or (state == "open") == i.open)
            and (cameras is None or i.camera_id in cameras)
            and (camera_id is None or i.camera_id == camera_id)
        ]
        return sorted(chosen, key=lambda i: (-SEVERITY_RANK.get(i.severity, 0) if i.open else 0, -i.last_step_at_us))

    def false_alarm_counts(self, cameras: set[str] | None = None) -> list[dict[str, Any]]:
        return [
            {"camera_id": camera, "zone_id": zone, "rule_id": rule, "false_alarms": count}
            for (camera, zone, rule), count in self.false_alarms.most_common()
            if cameras is None or camera in cameras
        ]
