"""Fire / smoke: a detector class `fire` or `smoke` is seen in the zone for a while.

Model-agnostic: any detector whose class names include them (e.g. a YOLO-format fire/smoke model given
by the detector configuration) feeds it; the default COCO model has neither class, so with it this rule
never fires. No default weights ship (none validated and permissively licensed was found).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..geometry import point_in_polygon
from ..model import Severity
from .base import Firing, RuleConfigBase, RuleFrame, register_rule, track_label

FIRE_CLASSES: tuple[str, ...] = ("fire", "smoke")


class FireSmokeRule(RuleConfigBase):
    """A fire- or smoke-class track whose box centre is in the zone, present (gaps up to `max_gap_s`
    bridged: flames and smoke flicker in and out of detection) for at least `min_duration_s`."""

    default_severity: ClassVar[Severity] = Severity.CRITICAL

    type: Literal["fire_smoke"] = "fire_smoke"
    classes: list[str] = Field(default_factory=lambda: list(FIRE_CLASSES), min_length=1)
    min_duration_s: float = Field(default=2.0, ge=0)
    max_gap_s: float = Field(default=5.0, gt=0)


def evaluate_fire_smoke(rule: FireSmokeRule, frame: RuleFrame) -> Firing | None:
    # Smoke and fire have no foot point: the box centre says where they are.
    inside = [t for t in frame.watched if point_in_polygon(t.center, frame.zone.polygon)]
    state = frame.state
    if not inside:
        if "last" in state and frame.now_ms - state["last"] > rule.max_gap_s * 1000:
            state.clear()
        return None
    if "since" not in state or frame.now_ms - state["last"] > rule.max_gap_s * 1000:
        state["since"] = frame.now_ms
    state["last"] = frame.now_ms
    duration_s = (frame.now_ms - state["since"]) / 1000.0
    if duration_s < rule.min_duration_s:
        return None
    return Firing(inside, f"{', '.join(map(track_label, inside))} in zone '{frame.zone.name}' for {duration_s:.0f} s")


register_rule(FireSmokeRule, evaluate_fire_smoke)
