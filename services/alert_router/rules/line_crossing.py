"""Line crossing: a track's foot point moves across a directed line, optionally in one direction only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from ..geometry import segments_intersect, side_of_line
from ..model import Severity
from .base import Firing, RuleConfigBase, RuleFrame, forget_gone_tracks, register_rule, track_label

if TYPE_CHECKING:
    from ..tracking import Track

NormalisedPoint = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


class LineCrossingRule(RuleConfigBase):
    """A track's foot point moves across `line` (two normalised points, first -> second).

    `a_to_b` = from the left-hand side to the right-hand side of the directed segment first -> second,
    as seen on screen; `b_to_a` the opposite way; `both` either way. The zone polygon is not consulted.

    `incident_per`: `track` (default) gives every crossing person (track) its own incident and alert, so
    three people crossing 2 s apart are three alerts, as a control room counting people over a perimeter
    (and KISA's per-event scoring) expects; a person re-crossing while their incident is open updates it
    (the description counts their crossings). `zone` folds all crossings into one incident per zone and
    rule until the line has been quiet for the end grace, for busy lines where one alert per burst is enough.
    """

    default_severity: ClassVar[Severity] = Severity.LOW

    type: Literal["line_crossing"] = "line_crossing"
    line: tuple[NormalisedPoint, NormalisedPoint]
    direction: Literal["a_to_b", "b_to_a", "both"] = "both"
    incident_per: Literal["track", "zone"] = "track"

    @property
    def incident_per_track(self) -> bool:
        return self.incident_per == "track"

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
    # Crossings per track id (str) while the track lives: consumers read the count from the description.
    counts: dict[str, int] = frame.state.setdefault("crossings", {})
    texts = []
    for track, direction in crossed:
        count = counts[str(track.track_id)] = counts.get(str(track.track_id), 0) + 1
        repeat = f" (crossing {count})" if count > 1 else ""
        texts.append(f"{track_label(track)} crossed line of zone '{frame.zone.name}' {direction}{repeat}")
    return Firing([t for t, _ in crossed], "; ".join(texts), track_descriptions=texts)


register_rule(LineCrossingRule, evaluate_line_crossing, forget_tracks=forget_gone_tracks("crossings"))
