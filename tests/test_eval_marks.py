"""`cctv eval-marks`: false-alarm statistics from operators' marks — the fold and the counts through plain
functions, then the real command reading real Alert and IncidentAction records from a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cctv.evaluation.marks import false_alarm_stats, marked_false, marks_markdown
from libs.kafka import create_topics, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import ALERTS, INCIDENT_ACTIONS, pipeline_topics
from tests.kafka_helpers import alert_record

SERDE = AvroSerde(shipped_catalog())
HOUR_MS = 3_600_000


def action(alert_id: str, kind: str, at_ms: int, action_id: str | None = None) -> dict:
    """A complete IncidentAction record (schemas/incident_action.avsc)."""
    return {
        "action_id": action_id or str(uuid.uuid4()),
        "alert_id": alert_id,
        "action": kind,
        "operator": "op1",
        "role": "operator",
        "assignee": None,
        "comment": None,
        "camera_id": None,
        "zone_id": None,
        "rule_id": None,
        "console_instance": "test",
        "timestamp": at_ms,
    }


def alert(alert_id: str, camera: str, at_ms: int, zone: str = "road", rule_type: str = "intrusion") -> dict:
    return alert_record(alert_id, camera, started_us=at_ms * 1000, zone_name=zone, zone_id=zone, event_type=rule_type)


def test_a_mark_counts_until_a_reopen_takes_it_back_in_time_order_each_action_once() -> None:
    assert marked_false([action("a", "FALSE_ALARM", 10)]) == {"a"}
    # Arrival order does not matter, time order does: reopened after the mark.
    assert marked_false([action("a", "REOPEN", 20), action("a", "FALSE_ALARM", 10)]) == set()
    assert marked_false([action("a", "REOPEN", 10), action("a", "FALSE_ALARM", 20)]) == {"a"}
    # Closing or acknowledging is not a false-alarm mark; a duplicate delivery is one action.
    assert marked_false([action("b", "CLOSE", 10), action("c", "ACKNOWLEDGE", 10)]) == set()
    same = action("d", "FALSE_ALARM", 10, action_id="x")
    assert marked_false([same, same, action("d", "REOPEN", 5)]) == {"d"}


def test_counts_per_camera_zone_rule_and_rule_type_with_shares_and_camera_hours() -> None:
    since, until = 0, 10 * HOUR_MS
    alerts = [
        alert("c1-1", "cam-1", 1 * HOUR_MS),
        {**alert("c1-1", "cam-1", 1 * HOUR_MS), "kind": "END", "sequence": 1},  # another step: same incident
        alert("c1-2", "cam-1", 2 * HOUR_MS),
        alert("c1-3", "cam-1", 3 * HOUR_MS, zone="gate", rule_type="loitering"),
        alert("c2-1", "cam-2", 4 * HOUR_MS),
        alert("old", "cam-2", -HOUR_MS),  # started before the period: not counted
    ]
    actions = [
        action("c1-1", "FALSE_ALARM", 1),
        action("c1-3", "FALSE_ALARM", 1),
        action("c2-1", "FALSE_ALARM", 1),
        action("c2-1", "REOPEN", 2),
        action("old", "FALSE_ALARM", 1),
    ]
    stats = false_alarm_stats(alerts, actions, since, until)
    cameras = {g.key["camera_id"]: g for g in stats.by_camera}
    assert (cameras["cam-1"].alerts, cameras["cam-1"].marked_false) == (3, 2)
    assert cameras["cam-1"].share_false == pytest.approx(2 / 3)
    assert cameras["cam-1"].false_per_camera_hour == pytest.approx(0.2)  # 2 in 10 camera-hours
    assert (cameras["cam-2"].alerts, cameras["cam-2"].marked_false, cameras["cam-2"].share_false) == (1, 0, 0.0)
    rows = {(g.key["camera_id"], g.key["zone"], g.key["rule_type"]): g for g in stats.by_zone_rule}
    assert (rows["cam-1", "road", "intrusion"].alerts, rows["cam-1", "road", "intrusion"].marked_false) == (2, 1)
    assert rows["cam-1", "gate", "loitering"].share_false == 1.0
    types = {g.key["rule_type"]: g for g in stats.by_rule_type}
    # Intrusion ran on two cameras: 20 camera-hours, one false alarm left (cam-2's was reopened).
    assert (types["intrusion"].alerts, types["intrusion"].marked_false) == (3, 1)
    assert types["intrusion"].camera_hours == 20.0 and types["intrusion"].false_per_camera_hour == 0.05
    assert stats.marks_without_alert == 1  # the mark on the incident before the period
    table = marks_markdown(stats)
    assert "| cam-1 | gate | r1 | loitering | 1 | 1 | 100% | 10.0 | 0.10 |" in table
    with pytest.raises(ValueError, match="length"):
        false_alarm_stats(alerts, actions, until, since)


def test_cctv_eval_marks_reads_real_alerts_and_marks_from_a_real_broker(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    now = int(time.time() * 1000)
    cam_a, cam_b = f"cam-a-{unique}", f"cam-b-{unique}"
    alerts = [alert(f"{cam_a}-{i}", cam_a, now - i * 60_000) for i in range(4)]
    alerts += [alert(f"{cam_b}-0", cam_b, now - 1000, zone="gate", rule_type="loitering")]
    actions = [
        action(f"{cam_a}-0", "FALSE_ALARM", now),
        action(f"{cam_a}-1", "FALSE_ALARM", now),
        action(f"{cam_a}-1", "REOPEN", now + 1),  # a supervisor disagreed
        action(f"{cam_a}-2", "CLOSE", now),
        action(f"{cam_b}-0", "FALSE_ALARM", now),
    ]
    producer = make_producer(kafka_settings, "test-eval-marks")
    for rec in alerts:
        producer.produce(ALERTS, key=rec["alert_id"], value=SERDE.serialize(ALERTS, "Alert", rec))
    for rec in actions:
        value = SERDE.serialize(INCIDENT_ACTIONS, "IncidentAction", rec)
        producer.produce(INCIDENT_ACTIONS, key=rec["alert_id"], value=value)
    producer.produce(INCIDENT_ACTIONS, key=b"junk", value=b"not avro")  # skipped and counted, not fatal
    assert producer.flush(30) == 0

    out = tmp_path / "marks"
    cli = [sys.executable, "-m", "cctv.cli", "eval-marks", "--bootstrap", kafka_settings.bootstrap_servers]
    done = subprocess.run(
        [*cli, "--since", "1h", "--out", str(out)], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "undecodable record(s) of cctv.incident-actions.v1 skipped" in done.stderr
    report = json.loads((out / "marks.json").read_text())
    cameras = {row["camera_id"]: row for row in report["by_camera"]}
    assert (cameras[cam_a]["alerts"], cameras[cam_a]["marked_false"]) == (4, 1)
    assert cameras[cam_a]["share_false"] == 0.25
    assert (cameras[cam_b]["alerts"], cameras[cam_b]["marked_false"]) == (1, 1)
    assert cameras[cam_a]["false_per_camera_hour"] == pytest.approx(1 / report["period_hours"], rel=1e-6)
    assert f"| {cam_b} | gate | r1 | loitering | 1 | 1 | 100% |" in (out / "marks.md").read_text()

    # A period that ends before these alerts counts none of them.
    early = tmp_path / "early"
    done = subprocess.run(
        [*cli, "--since", "3h", "--until", "2h", "--out", str(early)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert cam_a not in {row["camera_id"] for row in json.loads((early / "marks.json").read_text())["by_camera"]}


def test_cctv_eval_marks_reads_an_export_and_names_a_bad_line(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    alerts = tmp_path / "alerts.jsonl"
    actions = tmp_path / "actions.jsonl"
    alerts.write_text("\n".join(json.dumps(alert(f"e-{i}", "cam-x", now - i * 1000)) for i in range(3)) + "\n")
    actions.write_text(json.dumps(action("e-0", "FALSE_ALARM", now)) + "\n\n")
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "cctv.cli", "eval-marks", "--since", "1h", "--out", str(out)]
    files = ["--alerts-file", str(alerts), "--actions-file", str(actions)]
    done = subprocess.run([*cli, *files], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    (camera,) = json.loads((out / "marks.json").read_text())["by_camera"]
    assert (camera["camera_id"], camera["alerts"], camera["marked_false"]) == ("cam-x", 3, 1)

    actions.write_text(json.dumps(action("e-0", "FALSE_ALARM", now)) + '\n{"action_id": "a"}\n')
    done = subprocess.run([*cli, *files], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "actions.jsonl:2: record lacks" in done.stderr, done.stderr
    done = subprocess.run(
        [*cli, "--alerts-file", str(alerts)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2 and "give both" in done.stderr, done.stderr
