"""Fighting: two or more people close together, with fast, repeated limb motion, for a while.

Limb motion is measured on the pose stage's keypoints: wrists and elbows relative to the person's own
torso centre (so walking past does not count), in body heights per second. Without keypoints the rule
cannot see limbs and stays quiet. Defaults and how they were measured: docs/quality.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ..model import Severity
from .base import (
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

LIMBS = (7, 8, 9, 10)  # elbows, wrists
TORSO = (5, 6, 11, 12)  # shoulders, hips


class FightingRule(RuleConfigBase):
    default_severity: ClassVar[Severity] = Severity.HIGH

    type: Literal["fighting"] = "fighting"
    # Wrist/elbow speed relative to the torso (body heights per second) that counts as a fast limb.
    min_limb_speed: float = Field(default=1.5, gt=0)
    # People count as close when their box centres are within this many (mean) body heights.
    proximity_heights: float = Field(default=1.0, gt=0)
    # Fast-limb frames of a close pair must keep coming, no gap longer than `max_gap_s`, for `min_duration_s`,
    # and number at least `min_fast_frames`.
    min_duration_s: float = Field(default=3.0, ge=0)
    min_fast_frames: int = Field(default=3, ge=1)
    max_gap_s: float = Field(default=2.0, gt=0)
    min_keypoint_score: float = Field(default=0.3, ge=0, le=1)


def limb_offsets(track: Track, aspect: float, min_score: float) -> dict[str, list[float]] | None:
    """Elbows and wrists relative to the torso centre, in body heights (x in frame-height units)."""
    points = track.keypoints
    if points is None or len(points) < 13 or track.height <= 0:
        return None
    torso = [points[i] for i in TORSO if points[i][2] >= min_score]
    if len(torso) < 2:
        return None
    cx = sum(p[0] for p in torso) / len(torso)
    cy = sum(p[1] for p in torso) / len(torso)
    return {
        str(i): [(points[i][0] - cx) * aspect / track.height, (points[i][1] - cy) / track.height]
        for i in LIMBS
        if points[i][2] >= min_score
    }


def limb_speed(before: dict[str, Any], now_offsets: dict[str, list[float]], seconds: float) -> float | None:
    shared = [key for key in now_offsets if key in before["limbs"]]
    if not shared or seconds <= 0:
        return None
    return max(math.dist(before["limbs"][key], now_offsets[key]) for key in shared) / seconds


def evaluate_fighting(rule: FightingRule, frame: RuleFrame) -> Firing | None:
    limbs: dict[str, Any] = frame.state.setdefault("limbs", {})
    fast: list[Track] = []
    inside = [t for t in frame.watched if in_zone(t, frame.zone)]
    for track in inside:
        offsets = limb_offsets(track, frame.aspect, rule.min_keypoint_score)
        key = str(track.track_id)
        if offsets is None:
            limbs.pop(key, None)
            continue
        before = limbs.get(key)
        if before is not None and frame.now_ms - before["t"] <= rule.max_gap_s * 1000:
            speed = limb_speed(before, offsets, (frame.now_ms - before["t"]) / 1000.0)
            if speed is not None and speed >= rule.min_limb_speed:
                fast.append(track)
        limbs[key] = {"t": frame.now_ms, "limbs": offsets}
    involved = _close_to_others(fast, inside, frame.aspect, rule.proximity_heights)
    fight = frame.state.setdefault("fight", {})
    if not involved:
        if "last" in fight and frame.now_ms - fight["last"] > rule.max_gap_s * 1000:
            fight.clear()
        return None
    if "last" not in fight or frame.now_ms - fight["last"] > rule.max_gap_s * 1000:
        fight.update(since=frame.now_ms, frames=0)
    fight["last"] = frame.now_ms
    fight["frames"] += 1
    duration_s = (frame.now_ms - fight["since"]) / 1000.0
    if duration_s < rule.min_duration_s or fight["frames"] < rule.min_fast_frames:
        return None
    return Firing(
        involved, f"{', '.join(map(track_label, involved))} fighting in zone '{frame.zone.name}' for {duration_s:.0f} s"
    )


def _close_to_others(fast: list[Track], everyone: list[Track], aspect: float, proximity: float) -> list[Track]:
    """The fast-limbed people with someone close, and those close ones."""
    involved: dict[int, Track] = {}
    for person in fast:
        px, py = person.center
        for other in everyone:
            if other.track_id == person.track_id:
                continue
            ox, oy = other.center
            reach = proximity * (person.height + other.height) / 2
            if math.hypot((px - ox) * aspect, py - oy) <= reach:
                involved[person.track_id] = person
                involved[other.track_id] = other
    return list(involved.values())


register_rule(FightingRule, evaluate_fighting, forget_tracks=forget_gone_tracks("limbs"))
