"""Fall / collapse: a tracked person goes from upright to lying and stays down.

Posture comes from the pose stage's keypoints when the shoulders and hips are seen (the torso's angle
from vertical), else from the box shape (height / width in pixels). A person counts as fallen when a
lying posture follows an upright one within `upright_within_s` and lasts `min_down_s`; it ends when
they get up or leave. Defaults and how they were measured: docs/quality.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

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

LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 5, 6, 11, 12


class FallRule(RuleConfigBase):
    default_severity: ClassVar[Severity] = Severity.HIGH

    type: Literal["fall"] = "fall"
    # Seconds a person must stay down before the alert.
    min_down_s: float = Field(default=5.0, ge=0)
    # A lying posture counts only if the same track was upright at most this long before.
    upright_within_s: float = Field(default=10.0, gt=0)
    # Torso angle from vertical (degrees): at most `upright_max_deg` is upright, at least `lying_min_deg` lying.
    upright_max_deg: float = Field(default=35.0, ge=0, le=90)
    lying_min_deg: float = Field(default=60.0, ge=0, le=90)
    # Without keypoints: box height / width (pixels) at least `upright_min_ratio` upright, at most `lying_max_ratio` lying.
    upright_min_ratio: float = Field(default=1.4, gt=0)
    lying_max_ratio: float = Field(default=0.8, gt=0)
    # Keypoints below this score are not used.
    min_keypoint_score: float = Field(default=0.3, ge=0, le=1)

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> FallRule:
        if self.upright_max_deg >= self.lying_min_deg:
            raise ValueError(
                f"upright_max_deg ({self.upright_max_deg}) must be below lying_min_deg ({self.lying_min_deg})"
            )
        if self.lying_max_ratio >= self.upright_min_ratio:
            raise ValueError(
                f"lying_max_ratio ({self.lying_max_ratio}) must be below upright_min_ratio ({self.upright_min_ratio})"
            )
        return self


def torso_angle_deg(keypoints: list[list[float]] | None, aspect: float, min_score: float) -> float | None:
    """Angle (0 = upright, 90 = horizontal) of the line from mid-hip to mid-shoulder, in pixel units."""
    if keypoints is None or len(keypoints) < 13:
        return None
    points = [keypoints[i] for i in (LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP)]
    if any(point[2] < min_score for point in points):
        return None
    shoulder_x = (points[0][0] + points[1][0]) / 2 * aspect
    shoulder_y = (points[0][1] + points[1][1]) / 2
    hip_x = (points[2][0] + points[3][0]) / 2 * aspect
    hip_y = (points[2][1] + points[3][1]) / 2
    dx, dy = shoulder_x - hip_x, shoulder_y - hip_y
    if dx == 0 and dy == 0:
        return None
    return math.degrees(math.atan2(abs(dx), abs(dy)))


def posture(track: Track, aspect: float, rule: FallRule) -> Literal["upright", "lying"] | None:
    angle = torso_angle_deg(track.keypoints, aspect, rule.min_keypoint_score)
    if angle is not None:
        if angle <= rule.upright_max_deg:
            return "upright"
        return "lying" if angle >= rule.lying_min_deg else None
    ratio = track.height / (track.width * aspect)
    if ratio >= rule.upright_min_ratio:
        return "upright"
    return "lying" if ratio <= rule.lying_max_ratio else None


def evaluate_fall(rule: FallRule, frame: RuleFrame) -> Firing | None:
    # Track id (str) -> {"up": last time seen upright, "down": time it started lying after being upright}.
    people = frame.state.setdefault("people", {})
    fallen: list[tuple[Track, float]] = []
    for track in frame.watched:
        if not in_zone(track, frame.zone):
            continue
        entry = people.setdefault(str(track.track_id), {})
        seen = posture(track, frame.aspect, rule)
        if seen == "upright":
            foot_x, foot_y = track.foot
            entry.update(up=frame.now_ms, foot=[foot_x, foot_y], height=track.height)
            entry.pop("down", None)
        elif seen == "lying" and "down" not in entry and _was_upright(entry, track, people, frame, rule):
            entry["down"] = frame.now_ms
        if "down" in entry and seen != "upright":
            down_s = (frame.now_ms - entry["down"]) / 1000.0
            if down_s >= rule.min_down_s:
                fallen.append((track, down_s))
    if not fallen:
        return None
    return Firing(
        [t for t, _ in fallen],
        "; ".join(f"{track_label(t)} down in zone '{frame.zone.name}' for {s:.0f} s" for t, s in fallen),
    )


def _was_upright(entry: dict[str, Any], track: Track, people: dict[str, Any], frame: RuleFrame, rule: FallRule) -> bool:
    """Upright recently: this track, or — as a fall shrinks a box's height more than the tracker lets one
    track change size — a person who stood where this lying one is (within one of their heights)."""
    since_ms = frame.now_ms - rule.upright_within_s * 1000
    if entry.get("up", -math.inf) >= since_ms:
        return True
    centre_x, centre_y = track.center
    return any(
        other.get("up", -math.inf) >= since_ms
        and math.hypot((other["foot"][0] - centre_x) * frame.aspect, other["foot"][1] - centre_y) <= other["height"]
        for other in people.values()
        if other is not entry
    )


register_rule(FallRule, evaluate_fall, forget_tracks=forget_gone_tracks("people"))
