"""Line crossing: a track's foot point moves across a directed line, optionally in one direction only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from ..geometry import segments_intersect, side_of_line
from ..model import Severity
from .base import Firing, RuleConfigBase, RuleFrame, register_rule, track_label

if TYPE_CHECKING:
    from ..tracking import Track

NormalisedPoint = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


class LineCrossingRule(RuleConfigBase):
    """A track's foot point moves across `line` (two normalised points, first -> second).

    `a_to_b` = from the left-hand side to the right-hand side of the directed segment first -> second,
    as seen on screen; `b_to_a` the opposite way; `both` either way. The zone polygon is not consulted.
    """

    default_severity: ClassVar[Severity] = Severity.LOW

    type: Literal["line_crossing"] = "line_crossing"
    line: tuple[NormalisedPoint, NormalisedPoint]
    direction: Literal["a_to_b", "b_to_a", "both"] = "both"

    @field_validator("line")
    @classmethod
    def _line_has_length(
        cls, value: tuple[NormalisedPoint, NormalisedPoint]
    ) -> tuple[NormalisedPoint, NormalisedPoint]:
        (ax, ay), (bx, by) = value
        if abs(ax - bx) < 1e-6 and abs(ay - by) < 1e-6:
            raise ValueError(f"line endpoints {value[0]} and {value[1]} coincide; a crossing line needs length")
        return value


def crossing_direction(
    rule: LineCrossingRule, previous: tuple[float, float], current: tuple[float, float]
) -> str | None:
    """'a_to_b' / 'b_to_a' when the step previous->current crosses the rule's line, else None."""
    start, end = rule.line
    if not segments_intersect(previous, current, start, end):
        return None
    before = side_of_line(start, end, previous)
    after = side_of_line(start, end, current)
    # Touching the line is not crossing it: require a strict change of side.
    if before < 0 < after:
        return "a_to_b"
    if before > 0 > after:
        return "b_to_a"
    return None


def _last_point_off_line(track: Track, rule: LineCrossingRule) -> tuple[float, float] | None:
    """The latest earlier foot point strictly on one side of the line.

    A foot point landing exactly on the line must not hide the crossing, so skip such points.
    """
    start, end = rule.line
    for point in reversed(track.history[:-1]):
        foot = (point.foot_x, point.foot_y)
        if side_of_line(start, end, foot) != 0.0:
            return foot
    return None


def evaluate_line_crossing(rule: LineCrossingRule, frame: RuleFrame) -> Firing | None:
    crossed: list[tuple[Track, str]] = []
    for track in frame.watched:
        previous = _last_point_off_line(track, rule)
        if previous is None:
            continue
        direction = crossing_direction(rule, previous, track.foot)
        if direction is not None and rule.direction in ("both", direction):
            crossed.append((track, direction))
    if not crossed:
        return None
    return Firing(
        [t for t, _ in crossed],
        "; ".join(f"{track_label(t)} crossed line of zone '{frame.zone.name}' {direction}" for t, direction in crossed),
    )


register_rule(LineCrossingRule, evaluate_line_crossing)
