"""`cctv eval`: KISA window scoring as plain functions, and the command on a real annotated excerpt of the
sample clip (real decoder, real detector model, real tracker, rules and incidents; no Kafka)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cctv.evaluation.annotations import AnnotationError, load_annotations
from cctv.evaluation.scoring import LabelledEvent, RaisedAlert, score

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
LAWN = {
    "name": "lawn",
    "polygon": [[0.0, 0.46], [0.3, 0.54], [0.6, 0.68], [1.0, 0.87], [1.0, 1.0], [0.0, 1.0]],
    "rules": [{"type": "intrusion"}],
}


def _one(event_start_s: float, alert_at_s: float, end_s: float | None = None):
    event = LabelledEvent("c", "intrusion", event_start_s, end_s, "lawn")
    return score([event], [RaisedAlert("c", "intrusion", "lawn", alert_at_s)], {"intrusion": {"c": 600.0}})["intrusion"]


@pytest.mark.parametrize("offset_s", [-2.0, -1.0, 0.0, 4.5, 10.0])
def test_an_alert_from_2_s_before_to_10_s_after_the_start_detects_the_event(offset_s: float) -> None:
    result = _one(100.0, 100.0 + offset_s)
    assert (result.tp, result.fp, result.fn) == (1, 0, 0)
    assert result.mean_onset_delay_s == pytest.approx(offset_s)
    assert result.f1 == 1.0


@pytest.mark.parametrize("offset_s", [-3.0, -2.001, 10.001, 11.0])
def test_an_alert_outside_the_window_is_a_miss_and_a_false_alarm(offset_s: float) -> None:
    result = _one(100.0, 100.0 + offset_s)
    assert (result.tp, result.fp, result.fn) == (0, 1, 1)
    assert result.f1 == 0.0


def test_a_second_alert_during_a_long_event_is_a_repeat_and_event_time_is_not_event_free() -> None:
    event = LabelledEvent("c", "intrusion", 100.0, 300.0, "lawn")
    alerts = [RaisedAlert("c", "intrusion", "lawn", t) for t in (101.0, 250.0, 400.0)]
    result = score([event], alerts, {"intrusion": {"c": 3600.0}})["intrusion"]
    assert (result.tp, result.repeats, result.fp, result.fn) == (1, 1, 1, 0)
    # Event-free: 3600 s minus its span 98 s .. 310 s.
    assert result.event_free_s == pytest.approx(3600.0 - 212.0)
    assert result.false_alarms_per_hour == pytest.approx(1 / ((3600.0 - 212.0) / 3600.0))


def test_an_alert_of_another_zone_or_type_detects_nothing() -> None:
    event = LabelledEvent("c", "intrusion", 100.0, None, "lawn")
    alerts = [RaisedAlert("c", "intrusion", "road", 101.0), RaisedAlert("c", "loitering", "lawn", 101.0)]
    result = score([event], alerts, {"intrusion": {"c": 600.0}})["intrusion"]
    assert (result.tp, result.fp, result.fn) == (0, 1, 1)


def test_an_event_of_an_unlabelled_type_or_unknown_zone_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    clip = {
        "clip": "vtest-h264.mp4",
        "zones": [LAWN],
        "labelled": ["intrusion"],
        "events": [{"type": "loitering", "start_s": 3}],
    }
    path.write_text(yaml.safe_dump({"clips": [clip]}))
    with pytest.raises(AnnotationError, match=r"\['loitering'\] are not in `labelled`"):
        load_annotations(path, SAMPLES)
    clip["events"] = [{"type": "intrusion", "start_s": 3, "zone": "roof"}]
    path.write_text(yaml.safe_dump({"clips": [clip]}))
    with pytest.raises(AnnotationError, match=r"zones \['roof'\] that are not among \['lawn'\]"):
        load_annotations(path, SAMPLES)
    clip.update(clip="missing.mp4", events=[])
    path.write_text(yaml.safe_dump({"clips": [clip]}))
    with pytest.raises(AnnotationError, match="missing.mp4"):
        load_annotations(path, SAMPLES)


def test_cctv_eval_on_an_annotated_excerpt_gives_the_expected_counts(tmp_path: Path) -> None:
    # 44-58 s of the sample clip: two people step onto the lawn at 50.5 s (6.5 s into the excerpt), as
    # labelled by hand in samples/annotations/vtest.yaml; before that everybody keeps to the path.
    annotations = tmp_path / "excerpt.yaml"
    annotations.write_text(
        yaml.safe_dump(
            {
                "clips": [
                    {
                        "clip": "vtest-h264.mp4",
                        "start_s": 44,
                        "end_s": 58,
                        "sampling": {"mode": "fps", "fps": 2},
                        "zones": [LAWN],
                        "labelled": ["intrusion"],
                        "events": [{"type": "intrusion", "zone": "lawn", "start_s": 6.5, "end_s": 14}],
                    }
                ]
            }
        )
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "cctv.cli", "eval", str(annotations), "--clips", str(SAMPLES), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "eval.json").read_text())
    (intrusion,) = report["types"]
    assert (intrusion["tp"], intrusion["fp"], intrusion["fn"]) == (1, 0, 0)
    assert "| intrusion | 1 | 0 | 0 |" in (out / "eval.md").read_text()
    # Which footage the numbers are from is part of the report (clips without `part` are reported footage).
    assert report["part"] == "report" and (out / "eval.md").read_text().startswith("Part: report")
    assert (out / "eval.png").stat().st_size > 1000
    (clip,) = report["clips"]
    assert clip["frames_sampled"] >= 20  # 14 s at 2 fps, all with motion
    (alert,) = clip["alerts"]
    assert alert["zone"] == "lawn" and 6.5 - 2 <= alert["at_s"] <= 6.5 + 10
    # The real alert time against labels shifted to the window's edges, and one second past each.
    at = alert["at_s"]
    raised = [RaisedAlert("x", "intrusion", "lawn", at)]
    for label_start, detected in ((at + 2, True), (at + 3, False), (at - 10, True), (at - 11, False)):
        counts = score(
            [LabelledEvent("x", "intrusion", label_start, None, "lawn")], raised, {"intrusion": {"x": 14.0}}
        )["intrusion"]
        assert (counts.tp, counts.fn) == ((1, 0) if detected else (0, 1)), label_start


def test_only_the_chosen_part_is_scored_and_clips_in_parallel_processes_give_the_same_alerts(
    tmp_path: Path,
) -> None:
    from cctv.evaluation.command import evaluate

    report_clip = {
        "clip": "vtest-h264.mp4",
        "part": "report",
        "start_s": 48,
        "end_s": 56,
        "sampling": {"mode": "fps", "fps": 2},
        "zones": [LAWN],
        "labelled": ["intrusion"],
        "events": [{"type": "intrusion", "zone": "lawn", "start_s": 2.5}],
    }
    tune_clip = {**report_clip, "part": "tune", "start_s": 30, "end_s": 36, "events": []}
    path = tmp_path / "parts.yaml"
    path.write_text(yaml.safe_dump({"clips": [tune_clip, report_clip]}))

    scores, runs, _ = evaluate(path, SAMPLES)  # default: the report part only
    assert [r.clip_id for r in runs] == ["vtest-h264.mp4@48-56"]
    assert (scores["intrusion"].tp, scores["intrusion"].fn) == (1, 0)
    assert runs[0].cpu_s > 0

    both, parallel, _ = evaluate(path, SAMPLES, part="all", jobs=2)
    assert [r.clip_id for r in parallel] == ["vtest-h264.mp4@30-36", "vtest-h264.mp4@48-56"]
    assert parallel[1].alerts == runs[0].alerts and parallel[1].frames_sampled == runs[0].frames_sampled
    assert both["intrusion"].tp == 1 and both["intrusion"].event_free_s > scores["intrusion"].event_free_s

    path.write_text(yaml.safe_dump({"clips": [report_clip]}))
    with pytest.raises(AnnotationError, match="no clips of part 'tune'"):
        evaluate(path, SAMPLES, part="tune")


@pytest.mark.parametrize("name", ["vtest.yaml", "vtest-360p.yaml"])
def test_the_committed_annotations_load_and_keep_tuning_and_reporting_footage_apart(name: str) -> None:
    import av

    annotations = load_annotations(SAMPLES / "annotations" / name, SAMPLES)
    parts = {clip.part: clip for clip in annotations.clips}
    assert sorted(parts) == ["report", "tune"]
    tune, report = parts["tune"], parts["report"]
    with av.open(str(SAMPLES / tune.clip)) as container:
        length_s = float(container.duration or 0) / 1e6
    # The two parts do not overlap, and every event lies inside its excerpt.
    assert tune.end_s is not None and tune.end_s <= report.start_s
    for clip in (tune, report):
        end = (clip.end_s or length_s) - clip.start_s
        assert all(0 <= e.start_s < end and (e.end_s is None or e.end_s <= end) for e in clip.events), clip.clip_id
    # Each behaviour the set reports on has labelled events on both sides of the split.
    for event_type in ("intrusion", "loitering", "line_crossing"):
        assert any(e.type == event_type for e in tune.events) and any(e.type == event_type for e in report.events)
