"""Intrusion: a watched object stands inside a restricted zone."""

from __future__ import annotations

from typing import Literal

from .base import Firing, RuleConfigBase, RuleFrame, in_zone, register_rule, track_label


class IntrusionRule(RuleConfigBase):
    """A watched-class object's foot point is inside the (restricted) zone."""

    type: Literal["intrusion"] = "intrusion"


def evaluate_intrusion(rule: IntrusionRule, frame: RuleFrame) -> Firing | None:
    inside = [t for t in frame.watched if in_zone(t, frame.zone)]
    if not inside:
        return None
    return Firing(inside, f"{', '.join(map(track_label, inside))} in restricted zone '{frame.zone.name}'")


register_rule(IntrusionRule, evaluate_intrusion)
