"""Alert-router rules, config validation and incident lifecycle, driven through the real tracker."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cctv.inventory import InventoryError, parse_yaml
from libs.cameras import CameraEntry
from services.alert_router.config import CameraConfig, IncidentSettings, SeverityPolicy, ZoneConfig
from services.alert_router.incidents import alert_id_for
from services.alert_router.model import AlertEvent, AlertKind, Det, FrameDetections, FrameRef, Severity
from services.alert_router.pipeline import CameraMismatchError, CameraPipeline
from services.alert_router.rules.crowding import CrowdingRule
from services.alert_router.rules.intrusion import IntrusionRule
from services.alert_router.rules.loitering import LoiteringRule
from services.alert_router.rules.running import RunningRule, speed_heights_per_s
from services.alert_router.schedule import WeeklySchedule
from services.alert_router.tracking import HistoryPoint, Track

CAMERA_ID = "cam-1"
WIDTH, HEIGHT = 1280, 720
ASPECT = WIDTH / HEIGHT
# Monday 2026-06-01 12:00 UTC.
NOON_MS = int(datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)

# Where an object is at time t (seconds since scene start): (centre x, foot y, box height) or None (absent).
Path = Callable[[float], tuple[float, float, float] | None]

SQUARE = [[0.4, 0.4], [0.6, 0.4], [0.6, 0.8], [0.4, 0.8]]


def det(class_name: str, cx: float, foot_y: float, height: float, score: float = 0.9) -> Det:
    # Person-like proportions for people, squat boxes for luggage.
    width = height * (0.4 if class_name == "person" else 1.0) / ASPECT
    class_ids = {"person": 0, "car": 2, "backpack": 24, "handbag": 26, "suitcase": 28}
    return Det(cx - width / 2, foot_y - height, cx + width / 2, foot_y, class_ids[class_name], class_name, score)


def scene(
    objects: list[tuple[str, Path]], duration_s: float, fps: float, start_ms: int = NOON_MS
) -> list[FrameDetections]:
    frames: list[FrameDetections] = []
    steps = int(duration_s * fps) + 1
    for seq in range(steps):
        t = seq / fps
        dets = []
        for class_name, path in objects:
            where = path(t)
            if where is not None:
                dets.append(det(class_name, *where))
        frames.append(
            FrameDetections(
                camera_id=CAMERA_ID,
                frame_seq=seq,
                capture_time_ms=start_ms + round(t * 1000),
                frame_ref=FrameRef("cctv.frames.v1", 0, 1000 + seq),
                width=WIDTH,
                height=HEIGHT,
                detections=dets,
            )
        )
    return frames


def linear(start: tuple[float, float], end: tuple[float, float], duration_s: float, height: float = 0.2) -> Path:
    """Straight walk from start to end (foot points) over duration_s, then stands at the end."""

    def where(t: float) -> tuple[float, float, float]:
        f = min(t / duration_s, 1.0)
        return (start[0] + (end[0] - start[0]) * f, start[1] + (end[1] - start[1]) * f, height)

    return where


def still(x: float, foot_y: float, height: float = 0.2, until_s: float | None = None, from_s: float = 0.0) -> Path:
    def where(t: float) -> tuple[float, float, float] | None:
        if t < from_s or (until_s is not None and t > until_s):
            return None
        return (x, foot_y, height)

    return where


def camera(
    rules: list[dict[str, Any]], polygon: list[list[float]] | None = None, tags: list[str] | None = None, **zone: Any
) -> CameraConfig:
    return CameraConfig.model_validate(
        {
            "camera_id": CAMERA_ID,
            "name": "Test camera",
            "site_id": "site-a",
            "tags": tags or [],
            "zones": [{"name": "zone-a", "polygon": polygon or SQUARE, "rules": rules, **zone}],
        }
    )


def run(cam: CameraConfig, frames: list[FrameDetections], **incident: Any) -> list[AlertEvent]:
    pipeline = CameraPipeline(cam, incident_settings=IncidentSettings(**incident) if incident else None)
    events: list[AlertEvent] = []
    for frame in frames:
        events.extend(pipeline.process(frame))
    return events


def kinds(events: list[AlertEvent]) -> list[str]:
    return [str(e.kind) for e in events]


# --------------------------------------------------------------------------- intrusion
def test_intrusion_fires_when_a_person_walks_into_the_zone() -> None:
    frames = scene([("person", linear((0.1, 0.6), (0.5, 0.6), duration_s=8))], duration_s=12, fps=2)
    events = run(camera([{"type": "intrusion"}]), frames)
    news = [e for e in events if e.kind is AlertKind.NEW]
    assert len(news) == 1
    alert = news[0]
    assert alert.rule_type == "intrusion" and alert.zone == "zone-a" and alert.camera_id == CAMERA_ID
    # Foot crosses x=0.4 at t=6 s; with 2 fps the first frame inside is t=6.5 s at the latest.
    assert NOON_MS + 6000 <= alert.started_at <= NOON_MS + 6500
    assert alert.boxes and 0.4 <= (alert.boxes[0].x1 + alert.boxes[0].x2) / 2 <= 0.6
    assert "restricted zone 'zone-a'" in alert.description


def test_intrusion_ignores_people_outside_and_unwatched_classes() -> None:
    outside = ("person", linear((0.1, 0.9), (0.9, 0.9), duration_s=10))  # walks below the zone
    car_inside = ("car", still(0.5, 0.6, height=0.15))
    frames = scene([outside, car_inside], duration_s=12, fps=2)
    assert run(camera([{"type": "intrusion"}]), frames) == []


def test_intrusion_respects_zone_class_filter_and_schedule() -> None:
    walker = [("person", still(0.5, 0.6))]
    frames = scene(walker, duration_s=5, fps=2)
    assert run(camera([{"type": "intrusion"}], classes=["car"]), frames) == []
    night_only = {"timezone": "UTC", "windows": [{"start": "22:00", "end": "06:00"}]}
    assert run(camera([{"type": "intrusion"}], schedule=night_only), frames) == []
    midnight = NOON_MS + 12 * 3600 * 1000
    night_frames = scene(walker, duration_s=5, fps=2, start_ms=midnight)
    assert kinds(run(camera([{"type": "intrusion"}], schedule=night_only), night_frames)) == ["new"]


# --------------------------------------------------------------------------- loitering
def test_loitering_fires_only_after_the_dwell_time() -> None:
    frames = scene([("person", still(0.5, 0.6))], duration_s=80, fps=1)
    events = run(camera([{"type": "loitering", "min_dwell_s": 60}]), frames)
    news = [e for e in events if e.kind is AlertKind.NEW]
    assert len(news) == 1
    # Track confirmed on its 2nd frame (t=1 s), so the dwell is counted from then.
    assert news[0].started_at - NOON_MS == pytest.approx(61_000, abs=1000)
    assert "for 60 s" in news[0].description


def test_loitering_not_fired_by_passers_by_or_repeated_short_visits() -> None:
    passer = ("person", linear((0.1, 0.6), (0.9, 0.6), duration_s=30))  # ~8 s inside the zone
    assert run(camera([{"type": "loitering", "min_dwell_s": 20}]), scene([passer], 40, fps=1)) == []

    def in_and_out(t: float) -> tuple[float, float, float]:
        # 15 s inside, 5 s outside, repeated: never 20 s in a row inside.
        return (0.5 if t % 20 < 15 else 0.7, 0.6, 0.2)

    assert run(camera([{"type": "loitering", "min_dwell_s": 20}]), scene([("person", in_and_out)], 60, fps=1)) == []


# --------------------------------------------------------------------------- crowding
def _crowd(count: int, until_s: float | None = None) -> list[tuple[str, Path]]:
    return [
        ("person", still(0.42 + 0.04 * i, 0.5 + 0.06 * (i % 2), height=0.15, until_s=until_s)) for i in range(count)
    ]


def test_crowding_fires_when_enough_people_stay_long_enough() -> None:
    rules = [{"type": "crowding", "min_count": 5, "min_duration_s": 10}]
    events = run(camera(rules), scene(_crowd(5), duration_s=20, fps=1))
    news = [e for e in events if e.kind is AlertKind.NEW]
    assert len(news) == 1 and len(news[0].track_ids) == 5
    assert news[0].started_at - NOON_MS >= 10_000


def test_crowding_not_fired_below_count_or_duration() -> None:
    rules = [{"type": "crowding", "min_count": 5, "min_duration_s": 10}]
    assert run(camera(rules), scene(_crowd(4), duration_s=20, fps=1)) == []
    assert run(camera(rules), scene(_crowd(5, until_s=6), duration_s=20, fps=1)) == []


# --------------------------------------------------------------------------- line crossing
LINE = [[0.5, 0.2], [0.5, 0.9]]  # vertical; a_to_b (left of top->bottom on screen is +x side) ...


def test_line_crossing_direction() -> None:
    # For the directed segment top->bottom, the screen-left side is x > 0.5, the right side is x < 0.5.
    right_to_left_on_screen = ("person", linear((0.2, 0.6), (0.8, 0.6), duration_s=6))
    frames = scene([right_to_left_on_screen], duration_s=8, fps=2)
    # Walking +x goes from x<0.5 (right of top->bottom) to x>0.5 (left): that is b_to_a.
    assert kinds(run(camera([{"type": "line_crossing", "line": LINE, "direction": "b_to_a"}]), frames))[:1] == ["new"]
    assert run(camera([{"type": "line_crossing", "line": LINE, "direction": "a_to_b"}]), frames) == []
    assert kinds(run(camera([{"type": "line_crossing", "line": LINE, "direction": "both"}]), frames))[:1] == ["new"]
    back = scene([("person", linear((0.8, 0.6), (0.2, 0.6), duration_s=6))], duration_s=8, fps=2)
    assert kinds(run(camera([{"type": "line_crossing", "line": LINE, "direction": "a_to_b"}]), back))[:1] == ["new"]


def test_line_crossing_at_half_a_frame_per_second_and_not_beside_the_line() -> None:
    rule = [{"type": "line_crossing", "line": LINE}]
    sparse = scene([("person", linear((0.3, 0.6), (0.7, 0.6), duration_s=8))], duration_s=12, fps=0.5)
    assert kinds(run(camera(rule), sparse))[:1] == ["new"]
    beside = scene(
        [("person", linear((0.3, 0.95), (0.7, 0.95), duration_s=8))], duration_s=12, fps=2
    )  # passes below the segment end
    assert run(camera(rule), beside) == []
    parallel = scene([("person", linear((0.3, 0.3), (0.3, 0.8), duration_s=8))], duration_s=12, fps=2)
    assert run(camera(rule), parallel) == []


# --------------------------------------------------------------------------- running
BIG_ZONE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


def test_running_is_measured_in_body_heights_so_distance_does_not_matter() -> None:
    rule = [{"type": "running", "min_speed_heights_per_s": 1.6}]
    # Far runner: 0.05 tall, covers 0.15 of frame height per second = 3 body heights/s.
    far_runner = ("person", linear((0.1, 0.3), (0.1 + 0.15 * 4 / ASPECT, 0.3), duration_s=4, height=0.05))
    events = run(camera(rule, polygon=BIG_ZONE), scene([far_runner], duration_s=4, fps=5))
    assert [e.kind for e in events][:1] == [AlertKind.NEW]
    assert "running at 3.0 body heights/s" in events[0].description
    # Near walker: 0.4 tall, 0.32 of frame height per second (faster on screen than the runner) = 0.8 heights/s.
    near_walker = ("person", linear((0.1, 0.9), (0.1 + 0.32 * 2 / ASPECT, 0.9), duration_s=2, height=0.4))
    assert run(camera(rule, polygon=BIG_ZONE), scene([near_walker], duration_s=2, fps=5)) == []


def test_running_detected_at_low_irregular_rate_but_not_for_walkers() -> None:
    rule = [{"type": "running"}]
    runner = linear((0.05, 0.6), (0.05 + 0.2 * 3 * 6 / ASPECT, 0.6), duration_s=6, height=0.2)  # 3 heights/s
    walker = linear((0.05, 0.6), (0.05 + 0.2 * 0.8 * 6 / ASPECT, 0.6), duration_s=6, height=0.2)  # 0.8 heights/s
    irregular_times = [0.0, 0.3, 1.9, 2.2, 4.5, 5.0, 6.0]

    def frames_at(path: Path) -> list[FrameDetections]:
        frames = []
        for i, t in enumerate(irregular_times):
            where = path(t)
            assert where is not None
            dets = [det("person", *where)]
            frames.append(
                FrameDetections(CAMERA_ID, i, NOON_MS + round(t * 1000), FrameRef("f", 0, i), WIDTH, HEIGHT, dets)
            )
        return frames

    assert kinds(run(camera(rule, polygon=BIG_ZONE), frames_at(runner)))[:1] == ["new"]
    assert run(camera(rule, polygon=BIG_ZONE), frames_at(walker)) == []


def jittery(path: Path, seed: int, foot_sigma_heights: float = 0.04, height_sigma: float = 0.05) -> Path:
    """`path` seen through a detector: foot point and box height wobble from frame to frame."""
    rng = random.Random(seed)

    def where(t: float) -> tuple[float, float, float] | None:
        exact = path(t)
        if exact is None:
            return None
        x, foot_y, height = exact
        return (
            x + rng.gauss(0, foot_sigma_heights) * height / ASPECT,
            foot_y + rng.gauss(0, foot_sigma_heights) * height,
            height * (1 + rng.gauss(0, height_sigma)),
        )

    return where


@pytest.mark.parametrize("fps", [10, 5, 2, 1])
def test_running_holds_through_box_jitter_and_walkers_stay_quiet(fps: float) -> None:
    rule = [{"type": "running"}]
    height = 0.06  # a far person: 3 body heights/s is 0.1 of the frame width per second, 8 s in view
    runner = linear((0.05, 0.5), (0.05 + height * 3 * 8 / ASPECT, 0.5), duration_s=8, height=height)
    walker = linear((0.05, 0.5), (0.05 + height * 0.8 * 8 / ASPECT, 0.5), duration_s=8, height=height)
    for seed in range(5):
        runs = run(camera(rule, polygon=BIG_ZONE), scene([("person", jittery(runner, seed))], duration_s=8, fps=fps))
        assert kinds(runs)[:1] == ["new"], (fps, seed)
        walks = run(camera(rule, polygon=BIG_ZONE), scene([("person", jittery(walker, seed))], duration_s=8, fps=fps))
        assert walks == [], (fps, seed, [e.description for e in walks])


def track_with_history(points: list[tuple[float, float]], height: float = 0.2) -> Track:
    """A track observed at (seconds, foot x in body heights) along a horizontal path."""
    history = [HistoryPoint(NOON_MS + round(t * 1000), 0.1 + x * height / ASPECT, 0.5, 0.05, height) for t, x in points]
    last = history[-1]
    return Track(
        1,
        0,
        "person",
        0.9,
        last.foot_x - 0.02,
        0.3,
        last.foot_x + 0.02,
        0.5,
        [0.0] * 5,
        [0.0] * 5,
        history[0].time_ms,
        last.time_ms,
        len(history),
        history,
    )


def test_one_leap_of_a_track_is_not_running_but_a_steady_run_is() -> None:
    """Identity switches after a gap made every false running alert on the sample footage: the track
    jumps once to another person. The speed is the slowest of the recent spans, so one leap is not
    enough, while a runner is fast in every span."""
    rule = RunningRule()
    walk = [(t / 2, 0.8 * t / 2) for t in range(9)]  # 2 fps, 0.8 body heights/s, for 4 s
    leap = [*walk, (5.8, 0.8 * 5.8 + 3.0)]  # unseen 1.8 s, then 3 body heights further than walking
    assert speed_heights_per_s(track_with_history(walk), rule, ASPECT) == pytest.approx(0.8)
    assert speed_heights_per_s(track_with_history(leap), rule, ASPECT) == pytest.approx(0.8)
    # (The endpoint speed over the last 2+ s, the previous measure, calls that leap a run: (1.44 + 3) / 1.8 s.)
    run_steps = [(t / 2, 3.0 * t / 2) for t in range(5)]
    assert speed_heights_per_s(track_with_history(run_steps), rule, ASPECT) == pytest.approx(3.0)
    # One span is not enough to tell; spans broken by a gap longer than max_gap_s do not chain.
    assert speed_heights_per_s(track_with_history(run_steps[:2]), rule, ASPECT) is None
    assert speed_heights_per_s(track_with_history([(0, 0), (0.5, 1.5), (4.5, 13.5)]), rule, ASPECT) is None


# --------------------------------------------------------------------------- abandoned object
def test_abandoned_object_left_alone() -> None:
    rule = [{"type": "abandoned_object", "min_unattended_s": 20}]
    owner = ("person", linear((0.5, 0.6), (0.95, 0.6), duration_s=5))  # drops the bag and walks off to the right
    bag = ("suitcase", still(0.5, 0.6, height=0.05))
    events = run(camera(rule), scene([owner, bag], duration_s=40, fps=1))
    news = [e for e in events if e.kind is AlertKind.NEW]
    assert len(news) == 1 and news[0].boxes[0].class_name == "suitcase"
    # Owner is out of reach (5 bag sizes = 0.25) from ~t=1.5 s; the alert cannot come before 20 s after that.
    assert news[0].started_at - NOON_MS >= 21_000


def test_abandoned_object_not_fired_when_attended_or_outside_zone() -> None:
    rule = [{"type": "abandoned_object", "min_unattended_s": 20}]
    owner_nearby = ("person", still(0.53, 0.62))
    bag = ("suitcase", still(0.5, 0.6, height=0.05))
    assert run(camera(rule), scene([owner_nearby, bag], duration_s=40, fps=1)) == []
    bag_outside = ("suitcase", still(0.2, 0.3, height=0.05))
    assert run(camera(rule), scene([bag_outside], duration_s=40, fps=1)) == []


def unseen_between(path: Path, start_s: float, end_s: float) -> Path:
    """`path` with the detector missing the object from start_s to end_s."""
    return lambda t: None if start_s <= t < end_s else path(t)


def test_abandoned_object_keeps_its_timer_through_missed_detections() -> None:
    """Detectors miss a still bag for seconds at a time, longer than a track lives (4 s): the timer of a
    bag seen again where it stood continues, unless someone was at that spot meanwhile."""
    rule = [{"type": "abandoned_object", "min_unattended_s": 20}]
    owner = ("person", linear((0.5, 0.6), (0.95, 0.6), duration_s=5))
    bag = ("suitcase", unseen_between(still(0.5, 0.6, height=0.05), 8, 16))  # missed for 8 s

    def first_alert_s(*objects: tuple[str, Path], **rule_fields: float) -> float | None:
        events = run(camera([{**rule[0], **rule_fields}]), scene([owner, bag, *objects], duration_s=45, fps=1))
        news = [e for e in events if e.kind is AlertKind.NEW]
        return (news[0].started_at - NOON_MS) / 1000 if news else None

    started = first_alert_s()
    assert started is not None and 21 <= started <= 23  # 20 s after the owner left, not after the bag reappeared
    # Someone standing at the bag while it is hidden (the reason it was missed): a fresh 20 s.
    visitor = ("person", still(0.52, 0.62, until_s=15.5, from_s=9))
    later = first_alert_s(visitor)
    assert later is not None and later >= 36
    # A memory shorter than the gap forgets the bag: also a fresh 20 s from its return.
    forgetful = first_alert_s(memory_s=5)
    assert forgetful is not None and forgetful >= 36


# --------------------------------------------------------------------------- config validation
@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"type": "loitering", "min_dwell_s": 0}, "min_dwell_s"),
        ({"type": "crowding", "min_count": 1}, "min_count"),
        ({"type": "crowding", "min_duration_s": -1}, "min_duration_s"),
        ({"type": "line_crossing", "line": [[0.2, 0.2], [0.2, 0.2]]}, "coincide"),
        ({"type": "line_crossing", "line": [[0.2, 0.2], [1.2, 0.2]]}, "less than or equal to 1"),
        ({"type": "line_crossing", "line": [[0.2, 0.2], [0.4, 0.2]], "direction": "up"}, "direction"),
        ({"type": "line_crossing"}, "line"),
        ({"type": "running", "min_speed_heights_per_s": 0}, "min_speed_heights_per_s"),
        ({"type": "running", "window_s": 1, "min_span_s": 2}, "min_span_s"),
        ({"type": "abandoned_object", "person_radius_factor": -1}, "person_radius_factor"),
        ({"type": "intrusion", "classes": []}, "classes"),
        ({"type": "teleport"}, "teleport"),
        ({"type": "intrusion", "min_dwell_s": 3}, "min_dwell_s"),
    ],
)
def test_rule_config_rejected_with_actionable_message(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as error:
        camera([rule])
    assert message in str(error.value)


def test_rule_defaults_are_sensible() -> None:
    zone = camera([{"type": t} for t in ("intrusion", "loitering", "crowding", "running", "abandoned_object")]).zones[0]
    intrusion, loitering, crowding, running, abandoned = zone.rules
    assert isinstance(loitering, LoiteringRule) and isinstance(crowding, CrowdingRule)
    assert intrusion.classes == ["person"] and running.classes == ["person"]
    assert loitering.min_dwell_s == 60
    assert (crowding.min_count, crowding.min_duration_s) == (10, 10.0)  # a crowd, held for a while: not two passers-by
    assert set(abandoned.classes) == {"backpack", "handbag", "suitcase"}


def test_duplicate_rule_names_in_a_zone_rejected() -> None:
    with pytest.raises(ValidationError, match="used more than once"):
        camera([{"type": "loitering"}, {"type": "loitering", "min_dwell_s": 5}])
    # Distinct names make it valid.
    camera([{"type": "loitering"}, {"type": "loitering", "name": "short-stay", "min_dwell_s": 5}])


@pytest.mark.parametrize(
    ("polygon", "problem"),
    [
        ([[0.1, 0.1], [0.5, 0.1]], "at least 3 points"),
        ([[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]], "outside 0..1"),
        ([[0.1, 0.1], [0.5, 0.1], [0.3, 0.1]], "zero area"),
        ([[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]], "self-intersecting"),
    ],
)
def test_invalid_zone_polygon_names_camera_and_zone(polygon: list[list[float]], problem: str) -> None:
    with pytest.raises(ValidationError) as error:
        CameraConfig.model_validate(
            {
                "camera_id": "gate-cam-7",
                "zones": [{"name": "loading-bay", "polygon": polygon, "rules": [{"type": "intrusion"}]}],
            }
        )
    text = str(error.value)
    assert "gate-cam-7" in text and "loading-bay" in text and problem in text


def test_invalid_polygon_of_a_prebuilt_zone_still_names_camera() -> None:
    zone = ZoneConfig(name="z9", polygon=[(0.1, 0.1), (0.5, 0.5), (0.5, 0.1), (0.1, 0.5)], rules=[IntrusionRule()])
    with pytest.raises(ValidationError, match=r"camera 'c9' zone 'z9'.*self-intersecting"):
        CameraConfig(camera_id="c9", zones=[zone])


def test_schedule_validation_and_midnight_wrap() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        WeeklySchedule.model_validate({"timezone": "Mars/Olympus", "windows": [{"start": "08:00", "end": "09:00"}]})
    with pytest.raises(ValidationError, match="both 08:00"):
        WeeklySchedule.model_validate({"windows": [{"start": "08:00", "end": "08:00"}]})
    monday_night = WeeklySchedule.model_validate({"windows": [{"days": ["mon"], "start": "22:00", "end": "06:00"}]})
    hour = 3600 * 1000
    assert not monday_night.is_active(NOON_MS)  # Monday 12:00
    assert monday_night.is_active(NOON_MS + 11 * hour)  # Monday 23:00
    assert monday_night.is_active(NOON_MS + 17 * hour)  # Tuesday 05:00, still Monday's window
    assert not monday_night.is_active(NOON_MS + 35 * hour)  # Tuesday 23:00
    kolkata = WeeklySchedule.model_validate(
        {"timezone": "Asia/Kolkata", "windows": [{"start": "17:00", "end": "18:00"}]}
    )
    assert kolkata.is_active(NOON_MS)  # 12:00 UTC = 17:30 IST


# --------------------------------------------------------------------------- severity
def test_severity_by_rule_type_and_camera_tags() -> None:
    policy = SeverityPolicy()
    assert policy.severity_for("intrusion", ["park"]) is Severity.MEDIUM
    assert policy.severity_for("intrusion", ["school-zone", "park"]) is Severity.HIGH
    assert policy.severity_for("loitering", []) is Severity.LOW
    assert policy.severity_for("intrusion", ["school-zone"], explicit=Severity.CRITICAL) is Severity.CRITICAL
    frames = scene([("person", still(0.5, 0.6))], duration_s=3, fps=2)
    school = run(camera([{"type": "intrusion"}], tags=["school-zone"]), frames)
    assert school[0].severity is Severity.HIGH
    explicit = run(camera([{"type": "intrusion", "severity": "low"}], tags=["school-zone"]), frames)
    assert explicit[0].severity is Severity.LOW


# --------------------------------------------------------------------------- incident lifecycle
STAY_THEN_LEAVE = [("person", still(0.5, 0.6, until_s=100))]  # in the zone 0..100 s, then gone


def test_incident_lifecycle_new_update_rate_limited_end() -> None:
    frames = scene(STAY_THEN_LEAVE, duration_s=130, fps=2)
    events = run(camera([{"type": "intrusion"}]), frames, update_interval_s=30, end_grace_s=10)
    assert kinds(events) == ["new", "update", "update", "update", "end"]
    new, *updates, end = events
    assert len({e.alert_id for e in events}) == 1
    emitted = [new.detected_at] + [u.detected_at for u in updates]
    assert all(b - a >= 30_000 for a, b in itertools.pairwise(emitted))
    assert end.ended_at == NOON_MS + 100_000  # last frame the person was in the zone
    assert end.detected_at - end.ended_at >= 10_000  # grace honoured
    assert end.frame_ref == FrameRef("cctv.frames.v1", 0, 1000 + 200)  # evidence = last frame with the person
    assert all(e.started_at == new.started_at for e in events)


def test_short_detector_miss_does_not_split_an_incident() -> None:
    def flicker(t: float) -> tuple[float, float, float] | None:
        return None if 20 <= t < 25 else (0.5, 0.6, 0.2)  # 5 s of misses inside a 60 s stay

    events = run(camera([{"type": "intrusion"}]), scene([("person", flicker)], duration_s=60, fps=2), end_grace_s=10)
    assert kinds(events).count("new") == 1 and "end" not in kinds(events)


def test_snapshot_restore_mid_incident_emits_no_second_new_and_still_ends() -> None:
    frames = scene(STAY_THEN_LEAVE, duration_s=130, fps=2)
    cam = camera([{"type": "loitering", "min_dwell_s": 10}])
    uninterrupted = run(cam, frames)

    first = CameraPipeline(cam)
    events: list[AlertEvent] = []
    for frame in frames[:120]:  # t = 0..59.5 s: incident open since ~11 s
        events.extend(first.process(frame))
    assert kinds(events) == ["new", "update"]
    stored = json.loads(json.dumps(first.to_state()))  # what a Faust table would hold
    resumed = CameraPipeline(cam, state=stored)
    after = [e for frame in frames[120:] for e in resumed.process(frame)]
    assert "new" not in kinds(after) and kinds(after)[-1] == "end"
    assert events + after == uninterrupted


def test_replay_gives_identical_events_and_ids() -> None:
    frames = scene(STAY_THEN_LEAVE, duration_s=130, fps=2)
    cam = camera([{"type": "intrusion"}])
    first, second = run(cam, frames), run(cam, frames)
    assert first == second
    assert first[0].alert_id == alert_id_for(CAMERA_ID, "zone-a", "intrusion", first[0].started_at)
    later = run(cam, scene(STAY_THEN_LEAVE, duration_s=130, fps=2, start_ms=NOON_MS + 500_000))
    assert later[0].alert_id != first[0].alert_id


def test_redelivered_frames_are_ignored() -> None:
    frames = scene(STAY_THEN_LEAVE, duration_s=20, fps=2)
    pipeline = CameraPipeline(camera([{"type": "intrusion"}]))
    events = [e for f in frames for e in pipeline.process(f)]
    state = pipeline.to_state()
    assert [e for f in frames[-5:] for e in pipeline.process(f)] == []
    assert pipeline.to_state() == state
    assert kinds(events) == ["new"]


def test_expire_ends_incident_when_camera_goes_silent() -> None:
    frames = scene(STAY_THEN_LEAVE, duration_s=20, fps=2)
    pipeline = CameraPipeline(camera([{"type": "intrusion"}]), incident_settings=IncidentSettings(end_grace_s=10))
    events = [e for f in frames for e in pipeline.process(f)]
    last = frames[-1].capture_time_ms
    assert pipeline.expire(last + 5_000) == []
    ended = pipeline.expire(last + 10_000)
    assert kinds(ended) == ["end"] and ended[0].alert_id == events[0].alert_id


def test_frame_of_another_camera_is_refused() -> None:
    stray = scene([("person", still(0.5, 0.6))], duration_s=0, fps=1)[0]
    other = CameraConfig(camera_id="cam-2")
    with pytest.raises(CameraMismatchError, match="cam-1.*cam-2"):
        CameraPipeline(other).process(stray)


def test_removed_rule_ends_its_open_incident_after_reload() -> None:
    frames = scene([("person", still(0.5, 0.6))], duration_s=30, fps=2)
    before = CameraPipeline(camera([{"type": "intrusion"}]))
    events = [e for f in frames[:10] for e in before.process(f)]
    assert kinds(events) == ["new"]
    reconfigured = CameraPipeline(camera([{"type": "crowding", "min_count": 3}]), state=before.to_state())
    after = [e for f in frames[10:] for e in reconfigured.process(f)]
    assert kinds(after) == ["end"] and after[0].alert_id == events[0].alert_id


def test_default_inventory_zones_validate_after_the_record_round_trip() -> None:
    """samples/cameras.yaml (what `make run` publishes) as the alert-router reads it back: CameraEntry ->
    cctv.cameras.v1 record -> CameraEntry -> CameraConfig."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "samples" / "cameras.yaml").read_text(encoding="utf-8")
    entries = parse_yaml(text.replace("{repo}", "/srv/cctv").replace("{rtsp}", "rtsp://127.0.0.1:8554/campus"))
    configs = {}
    for entry in entries:
        read_back = CameraEntry.from_record(entry.to_record(updated_at_ms=NOON_MS))
        configs[entry.camera_id] = CameraConfig.from_entry(read_back)
    campus = configs["campus-file"]
    assert [z.name for z in campus.zones] == ["road", "crossing"]
    assert [r.type for r in campus.zones[0].rules] == ["intrusion", "loitering", "crowding"]
    crowding = campus.zones[0].rules[2]
    assert isinstance(crowding, CrowdingRule) and crowding.min_count == 4  # a float param in the record
    assert [r.type for r in campus.zones[1].rules] == ["line_crossing", "running"]


def test_inventory_rule_errors_name_line_camera_and_parameter() -> None:
    text = (
        "cameras:\n"
        "  - camera_id: gate-1\n    stream_url: rtsp://127.0.0.1:9/s\n    zones:\n"
        "      - name: yard\n        polygon: [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]\n"
        "        rules: [{type: loitering, min_dwell_s: 0}, {type: teleport}]\n"
    )
    with pytest.raises(InventoryError) as caught:
        parse_yaml(text)
    (problem,) = [str(e) for e in caught.value.errors]
    assert problem.startswith("line 2 (gate-1)"), problem
    assert "zones.0.rules.0.loitering.min_dwell_s: Input should be greater than 0" in problem, problem
    assert "zones.0.rules.1: Input tag 'teleport'" in problem and "'intrusion'" in problem, problem


def test_unreadable_stored_state_gives_clear_error() -> None:
    cam = camera([{"type": "intrusion"}])
    good = CameraPipeline(cam).to_state()
    with pytest.raises(ValueError, match="version"):
        CameraPipeline(cam, state={**good, "version": 0})
    broken = {**good, "tracker": {**good["tracker"], "tracks": [{"id": 1}]}}
    with pytest.raises(ValueError, match="cam-1.*unreadable.*delete the table entry"):
        CameraPipeline(cam, state=broken)


def test_non_numeric_rule_parameters_survive_the_inventory_record() -> None:
    """A list parameter (abandoned_object.person_classes) used to crash `cctv cameras apply` (every
    parameter was cast to float); it now travels in the record's options_json and comes back typed."""
    text = (
        "cameras:\n"
        "  - camera_id: hall-1\n    stream_url: rtsp://127.0.0.1:9/s\n    zones:\n"
        "      - name: lobby\n        polygon: [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]\n"
        "        rules: [{type: abandoned_object, min_unattended_s: 45, person_classes: [person, bicycle]}]\n"
    )
    (entry,) = parse_yaml(text)
    record = entry.to_record(updated_at_ms=NOON_MS)
    rule_record = record["zones"][0]["rules"][0]
    assert rule_record["params"] == {"min_unattended_s": 45.0}
    assert json.loads(rule_record["options_json"]) == {"person_classes": ["person", "bicycle"]}
    from libs.serde import AvroSerde, shipped_catalog

    serde = AvroSerde(shipped_catalog())
    decoded = serde.deserialize("t", "CameraConfig", serde.serialize("t", "CameraConfig", record))
    rule = CameraConfig.from_entry(CameraEntry.from_record(decoded)).zones[0].rules[0]
    assert rule.type == "abandoned_object"
    assert rule.person_classes == ["person", "bicycle"] and rule.min_unattended_s == 45


def test_a_bad_polygon_and_a_bad_rule_are_reported_together() -> None:
    """Errors come in one pass, not one layer at a time (fix the polygon, only then learn the rule is wrong)."""
    with pytest.raises(ValidationError) as error:
        CameraConfig.model_validate(
            {
                "camera_id": "gate-cam-7",
                "zones": [
                    {
                        "name": "bay",
                        "polygon": [[0.1, 0.1], [0.5, 0.1]],
                        "rules": [{"type": "loitering", "min_dwell_s": 0}, {"type": "teleport"}],
                    }
                ],
            }
        )
    text = str(error.value)
    assert "camera 'gate-cam-7' zone 'bay': polygon" in text and "at least 3 points" in text
    assert "min_dwell_s" in text and "teleport" in text
