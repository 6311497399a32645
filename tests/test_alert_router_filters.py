"""False-alarm controls (zone `filters`): on the real recorded detections of the sample clip, each control
removes exactly the tracks it is configured to remove and leaves every other firing as it was."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from libs.cameras import CameraEntry
from services.alert_router.config import CameraConfig
from services.alert_router.geometry import point_in_polygon
from services.alert_router.model import FrameDetections
from services.alert_router.pipeline import CameraPipeline
from tests.test_alert_router_tracking import load_recorded

WHOLE_FRAME = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
# The left part of the footpath, where people walk all the time: masked as if a flag waved there.
LEFT_MASK = [(0.0, 0.3), (0.45, 0.3), (0.45, 0.75), (0.0, 0.75)]


@dataclass(frozen=True, slots=True)
class Firing:
    """One track making the zone's intrusion rule hold on one frame."""

    time_ms: int
    track_id: int
    class_name: str
    score: float
    foot: tuple[float, float]
    height: float
    first_seen_ms: int


def firings(
    frames: list[FrameDetections], filters: dict[str, Any] | None, classes: list[str] | None = None
) -> set[Firing]:
    zone: dict[str, Any] = {
        "name": "all",
        "polygon": WHOLE_FRAME,
        "rules": [{"type": "intrusion", "classes": classes or ["person"]}],
    }
    if filters is not None:
        zone["filters"] = filters
    pipeline = CameraPipeline(CameraConfig.model_validate({"camera_id": "vtest", "zones": [zone]}))
    found: set[Firing] = set()
    for frame in frames:
        seen = pipeline.tracker.update(frame)
        for result in pipeline.rules.evaluate(
            frame.capture_time_ms, frame.aspect, seen, pipeline.tracker.active_track_ids()
        ):
            found |= {
                Firing(frame.capture_time_ms, t.track_id, t.class_name, t.score, t.foot, t.height, t.first_seen_ms)
                for t in result.tracks
            }
    return found


@pytest.fixture(scope="module")
def recorded() -> list[FrameDetections]:
    return load_recorded(0.5)


@pytest.fixture(scope="module")
def unfiltered(recorded: list[FrameDetections]) -> set[Firing]:
    found = firings(recorded, None)
    assert len(found) > 500  # a busy scene: plenty for every control to act on
    return found


def test_a_mask_removes_the_tracks_standing_in_it_and_nothing_else(recorded, unfiltered) -> None:
    masked = firings(recorded, {"masks": [LEFT_MASK]})
    in_mask = {f for f in unfiltered if point_in_polygon(f.foot, LEFT_MASK)}
    assert len(in_mask) > 100 and len(unfiltered - in_mask) > 100
    assert masked == unfiltered - in_mask


def test_a_zone_score_floor_removes_only_weaker_tracks(recorded, unfiltered) -> None:
    floor = 0.55
    weak = {f for f in unfiltered if f.score < floor}
    assert weak and unfiltered - weak
    assert firings(recorded, {"min_score": floor}) == unfiltered - weak


def test_a_class_score_floor_applies_to_its_class_only(recorded) -> None:
    both = firings(recorded, None, classes=["person", "car"])
    cars = {f for f in both if f.class_name == "car"}
    assert cars, "the parked van and car are detected"
    weak_people = {f for f in both if f.class_name == "person" and f.score < 0.6}
    floor = {"class_min_score": {"person": 0.6}, "min_score": 0.0}
    assert firings(recorded, floor, classes=["person", "car"]) == both - weak_people


def test_size_limits_remove_too_small_and_too_large_boxes_only(recorded, unfiltered) -> None:
    heights = sorted(f.height for f in unfiltered)
    low, high = heights[len(heights) // 10], heights[-len(heights) // 10]
    outside = {f for f in unfiltered if f.height < low or f.height > high}
    assert outside and unfiltered - outside
    assert firings(recorded, {"min_height": low, "max_height": high}) == unfiltered - outside


def test_minimum_persistence_delays_each_track_and_drops_nothing_later(recorded, unfiltered) -> None:
    young = {f for f in unfiltered if f.time_ms - f.first_seen_ms < 3000}
    assert young and unfiltered - young
    assert firings(recorded, {"min_persistence_s": 3}) == unfiltered - young


def test_bad_filters_are_refused_with_a_clear_message() -> None:
    def zone(filters: dict[str, Any]) -> dict[str, Any]:
        return {
            "camera_id": "c",
            "zones": [{"name": "z", "polygon": WHOLE_FRAME, "rules": [{"type": "intrusion"}], "filters": filters}],
        }

    with pytest.raises(ValidationError, match=r"min_height \(0.5\) must not exceed max_height \(0.2\)"):
        CameraConfig.model_validate(zone({"min_height": 0.5, "max_height": 0.2}))
    with pytest.raises(ValidationError, match="mask 0: needs at least 3 points"):
        CameraConfig.model_validate(zone({"masks": [[[0.1, 0.1], [0.2, 0.2]]]}))
    with pytest.raises(ValidationError, match="between 0 and 1"):
        CameraConfig.model_validate(zone({"class_min_score": {"person": 1.5}}))


def test_filters_travel_through_the_inventory_record_unchanged() -> None:
    filters = {
        "min_score": 0.5,
        "class_min_score": {"car": 0.7},
        "masks": [[[0.0, 0.0], [0.2, 0.0], [0.2, 0.2]]],
        "min_height": 0.05,
        "min_persistence_s": 2.0,
    }
    entry = CameraEntry(
        camera_id="c",
        stream_url="rtsp://h/s",
        zones=[{"name": "z", "polygon": WHOLE_FRAME, "rules": [{"type": "intrusion"}], "filters": filters}],
    )
    back = CameraEntry.from_record(entry.to_record(updated_at_ms=1))
    assert back.zones[0]["filters"] == filters
    assert CameraConfig.from_entry(back).zones[0].filters is not None
    plain = CameraEntry(
        camera_id="c",
        stream_url="rtsp://h/s",
        zones=[{"name": "z", "polygon": WHOLE_FRAME, "rules": [{"type": "intrusion"}]}],
    )
    assert "filters" not in CameraEntry.from_record(plain.to_record(updated_at_ms=1)).zones[0]
