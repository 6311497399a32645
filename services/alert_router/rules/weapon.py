"""Weapon: a tracked person is accompanied by a knife- or bat-like object for several frames.

Small objects at CCTV distances are detected rarely and with low scores (a knife is a few pixels at
20 m), so the rule counts frames on which a weapon track is next to a person, bridging short misses,
rather than requiring the weapon on every frame. See docs/quality.md for its measured false alarms.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ..model import Severity
from .base import (
    PERSON_CLASSES,
    Firing,
    RuleConfigBase,
    RuleFrame,
    forget_gone_tracks,
    in_zone,
    register_rule,
    track_label,
)

if TYPE_CHECKING:
    from ..tracking import Track

# COCO's knife- and bat-like classes; a weapon model's own class names can be configured instead.
WEAPON_CLASSES: tuple[str, ...] = ("knife", "baseball bat", "scissors")


class WeaponRule(RuleConfigBase):
    """A person standing in the zone has a weapon-class object within `reach_heights` of their box
    (in units of their own height) on at least `min_frames` frames, no gap between them longer than
    `max_gap_s`."""

    default_severity: ClassVar[Severity] = Severity.CRITICAL

    type: Literal["weapon"] = "weapon"
    classes: list[str] = Field(default_factory=lambda: list(WEAPON_CLASSES), min_length=1)
    person_classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), min_length=1)
    min_frames: int = Field(default=3, ge=1)
    reach_heights: float = Field(default=0.5, ge=0)
    max_gap_s: float = Field(default=2.0, gt=0)


def _gap_to_box(point: tuple[float, float], person: Track, aspect: float) -> float:
    """Distance (frame-height units) from a point to the nearest point of the person's box; 0 inside."""
    x, y = point
    dx = max(person.x1 - x, 0.0, x - person.x2) * aspect
    dy = max(person.y1 - y, 0.0, y - person.y2)
    return math.hypot(dx, dy)


def evaluate_weapon(rule: WeaponRule, frame: RuleFrame) -> Firing | None:
    # Person track id (str) -> {"frames": frames with a weapon beside them, "last": capture time of the last}.
    armed: dict[str, Any] = frame.state.setdefault("armed", {})
    weapons = frame.watched
    firing: list[Track] = []
    descriptions: list[str] = []
    for person in frame.seen:
        if person.class_name not in rule.person_classes or not in_zone(person, frame.zone):
            continue
        reach = rule.reach_heights * person.height
        near = [w for w in weapons if _gap_to_box(w.center, person, frame.aspect) <= reach]
        if not near:
            continue
        entry = armed.get(str(person.track_id))
        if entry is None or frame.now_ms - entry["last"] > rule.max_gap_s * 1000:
            entry = armed[str(person.track_id)] = {"frames": 0, "last": frame.now_ms}
        entry["frames"] += 1
        entry["last"] = frame.now_ms
        if entry["frames"] >= rule.min_frames:
            firing.extend([person, *near])
            descriptions.append(
                f"{track_label(person)} with {', '.join(map(track_label, near))} in zone '{frame.zone.name}'"
            )
    if not firing:
        return None
    return Firing(firing, "; ".join(descriptions))


register_rule(WeaponRule, evaluate_weapon, forget_tracks=forget_gone_tracks("armed"))
