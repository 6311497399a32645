"""Loitering: the same track stays inside the zone for too long."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ..model import Severity
from .base import Firing, RuleConfigBase, RuleFrame, forget_gone_tracks, in_zone, register_rule, track_label

if TYPE_CHECKING:
    from ..tracking import Track


class LoiteringRule(RuleConfigBase):
    """The same track stays inside the zone for longer than `min_dwell_s`."""

    default_severity: ClassVar[Severity] = Severity.LOW

    type: Literal["loitering"] = "loitering"
    min_dwell_s: float = Field(default=60.0, gt=0)


def evaluate_loitering(rule: LoiteringRule, frame: RuleFrame) -> Firing | None:
    # Track id (str) -> capture time it was first seen inside, for every watched track inside now.
    entered: dict[str, Any] = frame.state.setdefault("entered", {})
    loiterers: list[tuple[Track, float]] = []
    for track in frame.watched:
        track_id = str(track.track_id)
        if in_zone(track, frame.zone):
            entered.setdefault(track_id, frame.now_ms)
            dwell_s = (frame.now_ms - entered[track_id]) / 1000.0
            if dwell_s >= rule.min_dwell_s:
                loiterers.append((track, dwell_s))
        else:
            entered.pop(track_id, None)
    if not loiterers:
        return None
    return Firing(
        [t for t, _ in loiterers],
        "; ".join(f"{track_label(t)} in zone '{frame.zone.name}' for {dwell:.0f} s" for t, dwell in loiterers),
    )


register_rule(LoiteringRule, evaluate_loitering, forget_tracks=forget_gone_tracks("entered"))
