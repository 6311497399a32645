"""Line crossing counted per crossing: each crossing person (track) is its own incident and alert."""

from __future__ import annotations

from services.alert_router.incidents import alert_id_for
from services.alert_router.model import AlertEvent, AlertKind
from tests.test_alert_router_rules import LINE, camera, linear, run, scene
from tests.test_alert_router_tracking import T0, load_recorded, run_recorded, vtest_camera

# Walking +x over the vertical LINE (x = 0.5) is b_to_a; see test_alert_router_rules.
WALKER_AT = [0.0, 3.0, 5.5]  # three people, 2.5-3 s apart: all within the 10 s end grace of each other


def walkers(starts_s: list[float], foot_y: float = 0.6) -> list[tuple[str, object]]:
    def delayed(start_s: float, y: float):  # type: ignore[no-untyped-def]
        walk = linear((0.3, y), (0.7, y), duration_s=4)
        return lambda t: walk(t - start_s) if t >= start_s else None

    return [("person", delayed(s, foot_y + 0.08 * i)) for i, s in enumerate(starts_s)]


def news(events: list[AlertEvent]) -> list[AlertEvent]:
    return [e for e in events if e.kind is AlertKind.NEW]


def test_each_crossing_person_is_its_own_alert_within_the_grace() -> None:
    frames = scene(walkers(WALKER_AT), duration_s=20, fps=2)  # type: ignore[arg-type]
    per_track = run(camera([{"type": "line_crossing", "line": LINE, "direction": "b_to_a"}]), frames)
    raised = news(per_track)
    assert len(raised) == 3
    assert [len(e.track_ids) for e in raised] == [1, 1, 1] and len({e.track_ids[0] for e in raised}) == 3
    # Each alert at its own crossing (the walk takes 4 s from x 0.3 to 0.7: the line at 2 s).
    assert [
        round((e.started_at - frames[0].capture_time_ms) / 1000 - s) for e, s in zip(raised, WALKER_AT, strict=True)
    ] == [
        2,
        2,
        2,
    ]
    assert len({e.alert_id for e in raised}) == 3
    # Every incident ends on its own once its crossing is 10 s past (the last one at 7.5 s + 10 s).
    ended = {e.alert_id: e for e in per_track if e.kind is AlertKind.END}
    assert set(ended) == {e.alert_id for e in raised}
    assert all(ended[e.alert_id].ended_at == e.started_at for e in raised)
    # The option `incident_per: zone` keeps the former behaviour: one incident for the whole burst.
    per_zone = run(
        camera([{"type": "line_crossing", "line": LINE, "direction": "b_to_a", "incident_per": "zone"}]), frames
    )
    assert len(news(per_zone)) == 1 and len(news(per_zone)[0].track_ids) == 1
    (zone_end,) = [e for e in per_zone if e.kind is AlertKind.END]
    assert sorted(zone_end.track_ids) == sorted(e.track_ids[0] for e in raised)


def test_two_people_crossing_on_the_same_frame_get_two_stable_ids() -> None:
    frames = scene(walkers([0.0, 0.0]), duration_s=8, fps=2)  # type: ignore[arg-type]
    cam = camera([{"type": "line_crossing", "line": LINE}])
    first, replay = news(run(cam, frames)), news(run(cam, frames))
    assert len(first) == 2 and first[0].started_at == first[1].started_at
    assert first[0].alert_id != first[1].alert_id
    assert [e.alert_id for e in replay] == [e.alert_id for e in first]
    # The id is derived from camera, zone, rule, start and track, nothing random.
    assert {e.alert_id for e in first} == {
        alert_id_for(e.camera_id, e.zone, e.rule, e.started_at, e.track_ids[0]) for e in first
    }
    # Zone incidents keep their former ids (no track in the name).
    assert alert_id_for("c", "z", "r", 1) != alert_id_for("c", "z", "r", 1, 7)


def test_a_person_crossing_back_and_forth_is_one_incident_with_a_count() -> None:
    there_and_back = ("person", lambda t: (0.3 + 0.1 * t, 0.6, 0.2) if t < 4 else (0.7 - 0.1 * (t - 4), 0.6, 0.2))
    events = run(
        camera([{"type": "line_crossing", "line": LINE}]),
        scene([there_and_back], duration_s=9, fps=2),
        update_interval_s=1,
    )
    assert len(news(events)) == 1
    assert any("(crossing 2)" in e.description for e in events if e.kind is AlertKind.UPDATE)


def test_recorded_crossings_within_the_grace_each_raise_an_alert() -> None:
    """Real detections of the sample clip, the annotated path line (samples/annotations/vtest.yaml). Hand
    labels right -> left (a_to_b) at 18.4, 20.6, 25.5, 53.3, 60.2, 68.0 and 71.3 s: five of them less than
    10 s after the one before, which one incident per zone folded into the open incident."""
    frames = load_recorded(every_s=0.5)
    line = [[0.25, 0.28], [0.25, 0.58]]
    whole = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]

    def starts(incident_per: str) -> list[float]:
        rule = {"type": "line_crossing", "line": line, "direction": "a_to_b", "incident_per": incident_per}
        return [(e.started_at - T0) / 1000 for e in news(run_recorded(vtest_camera([rule], whole), frames))]

    labelled = [18.4, 20.6, 25.5, 53.3, 60.2, 68.0, 71.3]
    per_track = starts("track")
    # Every labelled crossing has its own alert within KISA's -2 s / +10 s window, and no extra alert.
    assert len(per_track) == len(labelled)
    assert all(-2.0 <= at - label <= 10.0 for at, label in zip(per_track, labelled, strict=True))
    # A second crossing within the grace (20.6 s, 2.2 s after 18.4 s) gives its own event: 1 s after its label.
    assert any(abs(at - 20.6) <= 1.0 for at in per_track)
    assert not any(abs(at - 20.6) <= 1.0 for at in starts("zone"))
