"""The chaos accounting on its own: plain records in, what was lost, duplicated or split out."""

from __future__ import annotations

from typing import Any

from cctv.chaos.accounting import account, account_alerts, account_frames

S = 1_000_000  # µs


def frame(camera: str, t: int) -> dict[str, Any]:
    return {"camera_id": camera, "capture_time": t}


def alert(alert_id: str, kind: str, sequence: int, started: int, detected: int, ended: int | None = None) -> dict:
    return {
        "alert_id": alert_id,
        "kind": kind,
        "sequence": sequence,
        "camera_id": "cam",
        "zone_id": "road",
        "rule_id": "intrusion",
        "started_at": started,
        "detected_at": detected,
        "ended_at": ended,
    }


def test_frames_dedup_by_coordinates_and_report_missing_and_orphans() -> None:
    frames = [frame("a", 1), frame("a", 2), frame("a", 2), frame("b", 1)]  # the sampler replayed a/2
    detections = [frame("a", 1), frame("a", 1), frame("a", 1), frame("a", 2), frame("c", 9)]
    result = account_frames(frames, detections)
    assert (result.frames, result.frame_duplicates) == (3, 1)
    assert (result.detections, result.detection_duplicates) == (3, 2)
    assert result.missing == [("b", 1)]
    assert result.orphans == [("c", 9)]


def test_replayed_alert_steps_are_duplicates_not_new_incidents() -> None:
    steps = [alert("x", "NEW", 0, 10 * S, 10 * S), alert("x", "UPDATE", 1, 10 * S, 40 * S)]
    steps += [alert("x", "NEW", 0, 10 * S, 10 * S), alert("x", "END", 2, 10 * S, 60 * S, ended=50 * S)]
    result = account_alerts(steps, end_grace_s=10)
    assert (result.records, result.duplicates, result.incidents) == (4, 1, 1)
    assert (result.new, result.end, result.still_open) == (1, 1, 0)
    assert result.problems == []


def test_incident_ended_early_and_restarted_is_a_split() -> None:
    """What a wall-clock expiry under lag produces: END, then a second NEW within the end grace."""
    steps = [
        alert("x", "NEW", 0, 10 * S, 10 * S),
        alert("x", "END", 1, 10 * S, 13 * S, ended=12 * S),
        alert("y", "NEW", 0, 14 * S, 14 * S),
    ]
    result = account_alerts(steps, end_grace_s=10)
    assert result.still_open == 1
    assert len(result.problems) == 1 and "split" in result.problems[0]
    # The same timeline with the new incident after the grace is two honest incidents.
    steps[2] = alert("y", "NEW", 0, 23 * S, 23 * S)
    assert account_alerts(steps, end_grace_s=10).problems == []


def test_lost_end_lost_new_and_unstable_copies_are_problems() -> None:
    steps = [
        alert("x", "NEW", 0, 10 * S, 10 * S),  # no END, yet a later incident of the same rule started
        alert("y", "NEW", 0, 90 * S, 90 * S),
        alert("y", "NEW", 0, 90 * S, 91 * S),  # a "replay" that is not the same step
        alert("z", "UPDATE", 3, 200 * S, 230 * S),  # its NEW never arrived
    ]
    problems = account_alerts(steps, end_grace_s=10).problems
    assert any("x" in p and "lost its END" in p for p in problems), problems
    assert any("not stable" in p for p in problems), problems
    assert any("exactly one NEW" in p for p in problems), problems


def test_summary_counts_everything() -> None:
    result = account([frame("a", 1)], [frame("a", 1), frame("a", 1)], [alert("x", "NEW", 0, S, S)], end_grace_s=10)
    summary = result.summary()
    assert summary["frames"]["detection_duplicates"] == 1 and summary["alerts"]["still_open"] == 1
    assert summary["problems"] == []
    assert "NEW 1" in result.line()
