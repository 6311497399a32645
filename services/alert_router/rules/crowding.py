"""Crowding: many watched objects inside the zone for a while."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Firing, RuleConfigBase, RuleFrame, in_zone, register_rule


class CrowdingRule(RuleConfigBase):
    """At least `min_count` watched objects inside the zone for at least `min_duration_s`."""

    type: Literal["crowding"] = "crowding"
    min_count: int = Field(default=10, ge=2)
    min_duration_s: float = Field(default=10.0, ge=0)


def evaluate_crowding(rule: CrowdingRule, frame: RuleFrame) -> Firing | None:
    inside = [t for t in frame.watched if in_zone(t, frame.zone)]
    if len(inside) < rule.min_count:
        frame.state.pop("since", None)
        return None
    since = frame.state.setdefault("since", frame.now_ms)
    duration_s = (frame.now_ms - since) / 1000.0
    if duration_s < rule.min_duration_s:
        return None
    return Firing(inside, f"{len(inside)} objects in zone '{frame.zone.name}' for {duration_s:.0f} s")


register_rule(CrowdingRule, evaluate_crowding)
