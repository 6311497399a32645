"""Loitering: a person stays inside the zone for too long, even if the tracker re-identifies them meanwhile."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ..model import Severity
from .base import Firing, RuleConfigBase, RuleFrame, in_zone, register_rule, track_label

if TYPE_CHECKING:
    from ..tracking import Track


class LoiteringRule(RuleConfigBase):
    """Someone stays inside the zone for longer than `min_dwell_s`.

    Dwell belongs to the presence at a spot, not only to a track id: a person the tracker loses (missed
    detections, an occluder, the picture's edge) or re-identifies under a new id, and who is seen again
    inside the zone within `rejoin_within_s` and `rejoin_heights` of their own height from where they were
    last seen, keeps the time they had. `rejoin_within_s: 0` restarts the clock on every new track.
    """

    default_severity: ClassVar[Severity] = Severity.LOW

    type: Literal["loitering"] = "loitering"
    min_dwell_s: float = Field(default=60.0, gt=0)
    # The tracker's own budget for a lost track is 4 s (TrackerSettings.max_age_s); this bridges longer
    # absences such as someone stepping behind a van for a few seconds.
    rejoin_within_s: float = Field(default=10.0, ge=0)
    # About where a person standing around is seen again: their own box size, plus some wandering.
    rejoin_heights: float = Field(default=1.5, gt=0)


# Per-track presence, JSON only: [entered_ms, last_seen_ms, foot_x, foot_y, height].
Presence = list[float]


def _presence_of(value: Any) -> Presence:
    # Snapshots written before rejoining existed hold the bare entry time.
    if isinstance(value, int | float):
        return [value, value, -10.0, -10.0, 1e-6]
    return [float(v) for v in value]


def _rejoined(rule: LoiteringRule, frame: RuleFrame, track: Track, candidates: dict[str, Presence]) -> str | None:
    """The id of the nearest lost or unseen presence this new track continues, if any is close enough."""
    best: tuple[float, str] | None = None
    for track_id, (_, last_ms, x, y, height) in candidates.items():
        if frame.now_ms - last_ms > rule.rejoin_within_s * 1000.0:
            continue
        scale = max(height, track.height, 1e-6)
        distance = math.hypot((track.foot[0] - x) * frame.aspect, track.foot[1] - y) / scale
        if distance <= rule.rejoin_heights and (best is None or distance < best[0]):
            best = (distance, track_id)
    return None if best is None else best[1]


def evaluate_loitering(rule: LoiteringRule, frame: RuleFrame) -> Firing | None:
    # Track id (str) -> presence, for every track inside the zone the tracker still holds.
    entered: dict[str, Any] = frame.state.setdefault("entered", {})
    # Presences of tracks the tracker dropped while inside, kept `rejoin_within_s` for a successor.
    lost: dict[str, Any] = frame.state.setdefault("lost", {})
    for table in (entered, lost):
        for track_id, value in table.items():
            table[track_id] = _presence_of(value)
    for track_id in [t for t, p in lost.items() if frame.now_ms - p[1] > rule.rejoin_within_s * 1000.0]:
        del lost[track_id]
    seen_ids = {str(t.track_id) for t in frame.watched}
    loiterers: list[tuple[Track, float]] = []
    for track in frame.watched:
        track_id = str(track.track_id)
        if not in_zone(track, frame.zone):
            entered.pop(track_id, None)
            continue
        if track_id not in entered:
            # Only presences not seen on this frame can be continued: two people side by side stay two.
            unseen = {t: p for t, p in entered.items() if t not in seen_ids}
            predecessor = _rejoined(rule, frame, track, {**unseen, **lost}) if rule.rejoin_within_s > 0 else None
            since = frame.now_ms
            if predecessor in lost:
                since = int(lost.pop(predecessor)[0])
            elif predecessor is not None:
                # Still held by the tracker (it may come back): copied, so neither id loses the time.
                since = int(entered[predecessor][0])
            entered[track_id] = [since, frame.now_ms, 0.0, 0.0, 0.0]
        presence = entered[track_id]
        presence[1:] = [frame.now_ms, track.foot[0], track.foot[1], track.height]
        dwell_s = (frame.now_ms - presence[0]) / 1000.0
        if dwell_s >= rule.min_dwell_s:
            loiterers.append((track, dwell_s))
    if not loiterers:
        return None
    return Firing(
        [t for t, _ in loiterers],
        "; ".join(f"{track_label(t)} in zone '{frame.zone.name}' for {dwell:.0f} s" for t, dwell in loiterers),
    )


def forget_lost_tracks(state: dict[str, Any], alive: set[str]) -> None:
    """Tracks the tracker dropped leave `entered`; their presence waits in `lost` for a successor."""
    entered = state.get("entered")
    if entered:
        lost = state.setdefault("lost", {})
        for track_id in [t for t in entered if t not in alive]:
            lost[track_id] = entered.pop(track_id)


register_rule(LoiteringRule, evaluate_loitering, forget_tracks=forget_lost_tracks)
