"""Abandoned object: a luggage-class object stays put with nobody near it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from .base import PERSON_CLASSES, Firing, RuleConfigBase, RuleFrame, in_zone, register_rule, track_label

if TYPE_CHECKING:
    from ..tracking import Track

LUGGAGE_CLASSES: tuple[str, ...] = ("backpack", "handbag", "suitcase")


class AbandonedObjectRule(RuleConfigBase):
    """A luggage-class object stays put for `min_unattended_s` with no person near it.

    "Near" is `person_radius_factor` times the object's size, so it scales with camera distance.
    """

    type: Literal["abandoned_object"] = "abandoned_object"
    classes: list[str] = Field(default_factory=lambda: list(LUGGAGE_CLASSES), min_length=1)
    person_classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), min_length=1)
    min_unattended_s: float = Field(default=30.0, gt=0)
    person_radius_factor: float = Field(default=5.0, gt=0)
    # Movement (in object sizes) below this counts as stationary: detector boxes jitter.
    stationary_tolerance: float = Field(default=0.5, gt=0)
    # How long a still object's timers survive it going undetected (missed detections, a person in
    # front of it); seen again within stationary_tolerance of where it stood, it continues its timers.
    memory_s: float = Field(default=120.0, ge=0)


def evaluate_abandoned_object(rule: AbandonedObjectRule, frame: RuleFrame) -> Firing | None:
    """State: `objects` (track id -> anchor point, still/unattended-since times, size, last seen) for
    objects tracked now, and `lost` (the same entries) for still objects whose track died."""
    now, aspect, zone = frame.now_ms, frame.aspect, frame.zone
    objects: dict[str, dict[str, Any]] = frame.state.setdefault("objects", {})
    people = [t for t in frame.seen if t.class_name in rule.person_classes]
    # Objects whose track died while they stood still: detectors often miss a still bag for seconds,
    # and a person standing in front of it hides it. Their timers wait here for `memory_s`.
    lost = [e for e in frame.state.get("lost", []) if now - e["seen_at"] <= rule.memory_s * 1000]
    for entry in lost:
        reach = rule.person_radius_factor * entry["size"]
        if any(_distance_to_box(entry["ax"], entry["ay"], person, aspect) <= reach for person in people):
            entry["unattended_since"] = None  # someone is with it (or took it)
    abandoned: list[tuple[Track, float]] = []
    for track in frame.watched:
        track_id = str(track.track_id)
        if not in_zone(track, zone):
            objects.pop(track_id, None)
            continue
        cx, cy = track.center
        size = max(track.width * aspect, track.height)  # in frame-height units
        entry = objects.get(track_id)
        if entry is None:  # a new track: the same object seen again where a lost one stood?
            tolerance = rule.stationary_tolerance * size
            entry = next((e for e in lost if math.hypot((cx - e["ax"]) * aspect, cy - e["ay"]) <= tolerance), None)
            if entry is not None:
                lost.remove(entry)
                entry = {key: entry[key] for key in ("ax", "ay", "still_since", "unattended_since")}
                objects[track_id] = entry
        moved = entry is not None and math.hypot((cx - entry["ax"]) * aspect, cy - entry["ay"]) > (
            rule.stationary_tolerance * size
        )
        if entry is None or moved:
            entry = {"ax": cx, "ay": cy, "still_since": now, "unattended_since": None}
            objects[track_id] = entry
        entry["size"], entry["seen_at"] = size, now
        radius = rule.person_radius_factor * size
        attended = any(_distance_to_box(cx, cy, person, aspect) <= radius for person in people)
        if attended:
            entry["unattended_since"] = None
        elif entry["unattended_since"] is None:
            entry["unattended_since"] = now
        if entry["unattended_since"] is not None:
            unattended_s = (now - max(entry["unattended_since"], entry["still_since"])) / 1000.0
            if unattended_s >= rule.min_unattended_s:
                abandoned.append((track, unattended_s))
    frame.state["lost"] = lost
    if not abandoned:
        return None
    return Firing(
        [t for t, _ in abandoned],
        "; ".join(f"{track_label(t)} unattended in zone '{zone.name}' for {seconds:.0f} s" for t, seconds in abandoned),
    )


def forget_abandoned_objects(state: dict[str, Any], alive: set[str]) -> None:
    """Objects whose track died move to `lost`, so the same object seen again keeps its timers."""
    objects = state.get("objects")
    if not objects:
        return
    for track_id in [t for t in objects if t not in alive]:
        entry = objects.pop(track_id)
        if "seen_at" in entry:  # seen at least once: kept for the same object's return
            state.setdefault("lost", []).append(entry)


def _distance_to_box(x: float, y: float, track: Track, aspect: float) -> float:
    """Distance (frame-height units) from a point to the nearest point of a track's box; 0 if inside."""
    dx = max(track.x1 - x, 0.0, x - track.x2) * aspect
    dy = max(track.y1 - y, 0.0, y - track.y2)
    return math.hypot(dx, dy)


register_rule(AbandonedObjectRule, evaluate_abandoned_object, forget_tracks=forget_abandoned_objects)
