"""False-alarm statistics from the operators' marks (pure functions; `cctv eval marks` reads the topics).

Operators mark incidents as false alarms in the console (FALSE_ALARM on cctv.incident-actions.v1; a
supervisor's REOPEN takes the mark back). This folds every incident's actions the way the console does
(in time order, deduplicated on action_id) and counts, per camera, per camera/zone/rule and per rule type:
incidents raised, incidents marked false, the share marked false and false alarms per camera-hour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MS_PER_HOUR = 3_600_000


@dataclass(slots=True)
class MarkGroup:
    """One row: a camera, a camera's zone/rule, or a rule type across cameras."""

    key: dict[str, str]
    cameras: set[str] = field(default_factory=set)
    alerts: int = 0
    marked_false: int = 0
    period_h: float = 0.0

    @property
    def camera_hours(self) -> float:
        return self.period_h * len(self.cameras)

    @property
    def share_false(self) -> float | None:
        return self.marked_false / self.alerts if self.alerts else None

    @property
    def false_per_camera_hour(self) -> float | None:
        return self.marked_false / self.camera_hours if self.camera_hours > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.key,
            "alerts": self.alerts,
            "marked_false": self.marked_false,
            "share_false": self.share_false,
            "camera_hours": self.camera_hours,
            "false_per_camera_hour": self.false_per_camera_hour,
        }


@dataclass(slots=True)
class MarkStats:
    since_ms: int
    until_ms: int
    by_camera: list[MarkGroup]
    by_zone_rule: list[MarkGroup]
    by_rule_type: list[MarkGroup]
    # FALSE_ALARM marks whose incident is not among the alerts read (older than the alerts' retention
    # or than --since): counted here, not in the rows, so no row's share can exceed 1.
    marks_without_alert: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "since_ms": self.since_ms,
            "until_ms": self.until_ms,
            "period_hours": (self.until_ms - self.since_ms) / MS_PER_HOUR,
            "by_camera": [g.as_dict() for g in self.by_camera],
            "by_zone_rule": [g.as_dict() for g in self.by_zone_rule],
            "by_rule_type": [g.as_dict() for g in self.by_rule_type],
            "marks_without_alert": self.marks_without_alert,
        }


def marked_false(actions: Iterable[dict[str, Any]]) -> set[str]:
    """alert_ids whose incident is a false alarm after all its actions: the console's fold (time order,
    ties by action_id, each action_id once): FALSE_ALARM marks, REOPEN clears the mark."""
    unique = {a["action_id"]: a for a in actions}
    state: dict[str, bool] = {}
    for action in sorted(unique.values(), key=lambda a: (a["timestamp"], a["action_id"])):
        kind = str(action["action"]).upper()
        if kind == "FALSE_ALARM":
            state[action["alert_id"]] = True
        elif kind == "REOPEN":
            state[action["alert_id"]] = False
    return {alert_id for alert_id, is_false in state.items() if is_false}


def false_alarm_stats(
    alerts: Iterable[dict[str, Any]], actions: Iterable[dict[str, Any]], since_ms: int, until_ms: int
) -> MarkStats:
    """`alerts`: Alert records (any step; one incident per alert_id, counted if it started in the
    period); `actions`: IncidentAction records. Camera-hours: the period times the cameras in a row."""
    if until_ms <= since_ms:
        raise ValueError(f"the period must have a length: until ({until_ms}) is not after since ({since_ms})")
    incidents: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        started_ms = alert["started_at"] // 1000  # timestamp-micros
        if since_ms <= started_ms < until_ms:
            incidents.setdefault(alert["alert_id"], alert)
    false_ids = marked_false(actions)
    period_h = (until_ms - since_ms) / MS_PER_HOUR
    groupings: dict[str, dict[tuple[str, ...], MarkGroup]] = {"camera": {}, "zone_rule": {}, "rule_type": {}}
    for alert_id, alert in sorted(incidents.items()):
        camera = alert["camera_id"]
        keys = {
            "camera": {"camera_id": camera},
            "zone_rule": {
                "camera_id": camera,
                "zone": alert["zone_name"],
                "rule_id": alert["rule_id"],
                "rule_type": alert["event_type"],
            },
            "rule_type": {"rule_type": alert["event_type"]},
        }
        for grouping, key in keys.items():
            group = groupings[grouping].setdefault(tuple(key.values()), MarkGroup(key, period_h=period_h))
            group.cameras.add(camera)
            group.alerts += 1
            group.marked_false += alert_id in false_ids
    return MarkStats(
        since_ms,
        until_ms,
        *(sorted(groupings[g].values(), key=lambda m: tuple(m.key.values())) for g in groupings),
        marks_without_alert=len(false_ids - incidents.keys()),
    )


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def marks_markdown(stats: MarkStats) -> str:
    hours = (stats.until_ms - stats.since_ms) / MS_PER_HOUR
    lines = [f"False-alarm marks over {hours:.1f} h (operators' FALSE_ALARM marks; a REOPEN takes one back).", ""]
    for title, rows, columns in (
        ("Per camera", stats.by_camera, ("camera_id",)),
        ("Per camera, zone and rule", stats.by_zone_rule, ("camera_id", "zone", "rule_id", "rule_type")),
        ("Per rule type (all cameras)", stats.by_rule_type, ("rule_type",)),
    ):
        lines += [
            f"### {title}",
            "",
            "| "
            + " | ".join(columns)
            + " | alerts | marked false | share false | camera-hours | false / camera-hour |",
            "|" + "---|" * (len(columns) + 5),
        ]
        for row in rows:
            lines.append(
                "| "
                + " | ".join(row.key[c] for c in columns)
                + f" | {row.alerts} | {row.marked_false} | {_share(row.share_false)} | {row.camera_hours:.1f} "
                f"| {_rate(row.false_per_camera_hour)} |"
            )
        lines.append("")
    if stats.marks_without_alert:
        lines.append(f"{stats.marks_without_alert} false-alarm mark(s) on incidents outside the alerts read.")
    return "\n".join(lines).rstrip() + "\n"
