"""Per-frame rule evaluation over tracked objects, with JSON-compatible timer state.

The engine knows no rule type: each zone's rules are evaluated by the evaluator their type registered
(see `base.py`), and each rule keeps its own timers under the key 'zone/rule'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .base import RuleFrame, rule_type

if TYPE_CHECKING:
    from ..config import CameraConfig
    from ..tracking import Track


@dataclass(slots=True)
class RuleResult:
    """Whether one rule of one zone holds on this frame, and which tracks make it hold."""

    zone: str
    rule: str
    rule_type: str
    active: bool
    tracks: list[Track] = field(default_factory=list)
    description: str = ""
    # One incident per firing track (the rule's `incident_per_track`), keyed 'zone/rule#track'.
    per_track: bool = False
    track_descriptions: list[str] | None = None

    @property
    def key(self) -> str:
        return f"{self.zone}/{self.rule}"


class RuleEngine:
    """Evaluates every rule of every zone of one camera, frame by frame."""

    def __init__(self, camera: CameraConfig, state: dict[str, Any] | None = None) -> None:
        self.camera = camera
        # rule key -> rule-specific timers; only JSON types inside.
        self.state: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (state or {}).items()}
        self._rules = {f"{zone.name}/{rule.key}": rule for zone in camera.zones for rule in zone.rules}
        # Config may have changed since the snapshot: forget timers of rules that no longer exist.
        for key in list(self.state):
            if key not in self._rules:
                del self.state[key]

    def to_state(self) -> dict[str, Any]:
        return self.state

    def evaluate(self, now_ms: int, aspect: float, seen: list[Track], alive_ids: set[int]) -> list[RuleResult]:
        """`seen`: confirmed tracks observed on this frame; `alive_ids`: all tracks the tracker still holds."""
        self._forget_dead_tracks(alive_ids)
        results: list[RuleResult] = []
        for zone in self.camera.zones:
            scheduled = zone.schedule is None or zone.schedule.is_active(now_ms)
            for rule in zone.rules:
                key = f"{zone.name}/{rule.key}"
                result = RuleResult(zone.name, rule.key, rule.type, False, per_track=rule.incident_per_track)
                results.append(result)
                if not scheduled:
                    self.state.pop(key, None)  # timers restart when the schedule opens again
                    continue
                watched_classes = zone.watched_classes(rule.classes)
                # The zone's false-alarm controls decide which tracks count at all, for every rule.
                counted = seen if zone.filters is None else [t for t in seen if zone.filters.admits(t, now_ms)]
                frame = RuleFrame(
                    zone=zone,
                    now_ms=now_ms,
                    aspect=aspect,
                    watched=[t for t in counted if t.class_name in watched_classes],
                    seen=counted,
                    state=self.state.setdefault(key, {}),
                )
                firing = rule_type(rule.type).evaluate(rule, frame)
                if firing is not None:
                    result.active, result.tracks, result.description = True, firing.tracks, firing.description
                    result.track_descriptions = firing.track_descriptions
        return results

    def _forget_dead_tracks(self, alive_ids: set[int]) -> None:
        alive = {str(i) for i in alive_ids}
        for key, rule_state in self.state.items():
            forget = rule_type(self._rules[key].type).forget_tracks
            if forget is not None:
                forget(rule_state, alive)
