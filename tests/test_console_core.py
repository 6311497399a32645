"""The console's pure core: incident book, wall selection, maintenance, distances, users and sessions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from services.console.auth import LoginThrottle, Signer, allowed, csrf_ok
from services.console.incidents import (
    Action,
    ActionRejected,
    IncidentBook,
    validate_action,
)
from services.console.users import UserStore, ensure_dev_users, hash_password
from services.console.wall import (
    CameraState,
    cameras_within,
    distance_m,
    maintenance_alerts,
    select_wall,
)
from tests.kafka_helpers import alert_record


def alert(
    alert_id: str,
    kind: str = "NEW",
    sequence: int = 0,
    severity: str = "HIGH",
    camera: str = "cam-1",
    detected_at: int = 1_000_000,
    **extra: object,
) -> dict:
    return alert_record(
        alert_id,
        camera,
        kind,
        sequence,
        started_us=1_000_000,
        detected_us=detected_at,
        ended_us=detected_at if kind == "END" else None,
        severity=severity,
        camera_name=camera.upper(),
        site_id="s",
        zone_id="z1",
        zone_name="gate",
        snapshot_jpeg=b"\xff\xd8jpeg",
        description=f"{alert_id} happened",
        destinations=["police"],
        **extra,
    )


def action(action_id: str, alert_id: str, kind: str, at: int, **extra: object) -> Action:
    return Action(action_id=action_id, alert_id=alert_id, action=kind, operator="op", timestamp_ms=at, **extra)


def test_alert_steps_fold_into_one_incident_and_replays_are_ignored() -> None:
    book = IncidentBook()
    incident, created = book.apply_alert(alert("a"))
    assert created and incident.status == "new" and incident.alert_active
    _, created = book.apply_alert(alert("a", "UPDATE", 1, severity="CRITICAL", detected_at=2_000_000))
    assert not created and incident.severity == "CRITICAL" and incident.last_step_at_us == 2_000_000
    book.apply_alert(alert("a", "END", 2, detected_at=3_000_000))
    book.apply_alert(alert("a", "END", 2, detected_at=3_000_000))  # at-least-once replay
    assert len(incident.steps) == 3 and not incident.alert_active and incident.ended_at_us == 3_000_000
    assert incident.open, "an ended alert stays open until an operator closes it"


def test_actions_fold_in_time_order_whatever_the_arrival_order() -> None:
    records = [
        action("1", "a", "acknowledge", 10),
        action("2", "a", "assign", 20, assignee="kim"),
        action("3", "a", "close", 30),
    ]
    states = []
    for order in (records, records[::-1], [records[1], records[2], records[0]]):
        book = IncidentBook()
        book.apply_alert(alert("a"))
        for record in order:
            book.apply_action(record)
        incident = book.get("a")
        states.append((incident.status, incident.assignee, incident.acknowledged_by, incident.closed_by))
    assert states == [("closed", "kim", "op", "op")] * 3


def test_actions_before_their_alert_wait_and_apply_once() -> None:
    book = IncidentBook()
    assert book.apply_action(action("1", "late", "false_alarm", 10)) is None
    book.apply_action(action("1", "late", "false_alarm", 10))  # duplicate delivery
    incident, _ = book.apply_alert(alert("late"))
    assert incident.status == "closed" and incident.false_alarm and len(incident.actions) == 1
    assert book.false_alarm_counts() == [{"camera_id": "cam-1", "zone_id": "z1", "rule_id": "r1", "false_alarms": 1}]


def test_reopen_clears_false_alarm_state_and_validation_refuses_impossible_actions() -> None:
    book = IncidentBook()
    incident, _ = book.apply_alert(alert("a"))
    with pytest.raises(ActionRejected) as bad:
        validate_action(incident, "explode", None, None)
    assert bad.value.status == 422 and "acknowledge" in str(bad.value)
    with pytest.raises(ActionRejected) as no_assignee:
        validate_action(incident, "assign", " ", None)
    assert no_assignee.value.status == 422
    with pytest.raises(ActionRejected) as not_closed:
        validate_action(incident, "reopen", None, None)
    assert not_closed.value.status == 409
    book.apply_action(action("1", "a", "false_alarm", 10))
    with pytest.raises(ActionRejected) as closed:
        validate_action(incident, "acknowledge", None, None)
    assert closed.value.status == 409
    validate_action(incident, "comment", None, "noted")  # comments stay allowed on closed incidents
    book.apply_action(action("2", "a", "reopen", 20))
    assert incident.status == "acknowledged" and not incident.false_alarm
    assert book.false_alarm_counts()[0]["false_alarms"] == 1, "the mark was made; the count keeps it"


def test_open_incidents_sort_by_severity_then_newest_and_book_stays_bounded() -> None:
    book = IncidentBook(max_incidents=10)
    book.apply_alert(alert("low", severity="LOW", detected_at=5))
    book.apply_alert(alert("crit", severity="CRITICAL", detected_at=1))
    book.apply_alert(alert("high-old", severity="HIGH", detected_at=2))
    book.apply_alert(alert("high-new", severity="HIGH", detected_at=3))
    assert [i.alert_id for i in book.select("open")] == ["crit", "high-new", "high-old", "low"]
    book.apply_action(action("c", "low", "close", 1))
    for n in range(20):
        book.apply_alert(alert(f"more-{n}", detected_at=10 + n))
    assert len(book.incidents) == 10 and book.get("low") is None, "closed ones are evicted first"
    assert book.evicted == 14


def test_wall_shows_incident_cameras_first_then_active_ones_and_counts_the_idle() -> None:
    cameras = {
        c: CameraState(c, in_inventory=True) for c in ("idle-1", "idle-2", "act-old", "act-new", "inc", "hidden")
    }
    cameras["act-old"].activity, cameras["act-old"].activity_since_us = "ACTIVE", 1
    cameras["act-new"].activity, cameras["act-new"].activity_since_us = "ACTIVE", 5
    cameras["hidden"].activity = "ACTIVE"
    cameras["removed"] = CameraState("removed", in_inventory=False, activity="ACTIVE")
    book = IncidentBook()
    book.apply_alert(alert("i1", camera="inc", severity="MEDIUM"))
    book.apply_alert(alert("i2", camera="act-old", severity="CRITICAL"))
    selection = select_wall(cameras, book.select("open"), allowed={"idle-1", "idle-2", "act-old", "act-new", "inc"})
    assert selection.tiles == ["act-old", "inc", "act-new"]
    assert selection.idle_count == 2 and selection.incident_of["act-old"].alert_id == "i2"
    assert select_wall(cameras, [], None, max_tiles=1).tiles == ["act-new"]
    everyone = select_wall(cameras, [], None)
    assert "removed" not in everyone.tiles and everyone.idle_count == 6 - 3, "a removed camera is not counted"


def test_maintenance_flags_long_failures_and_online_cameras_without_frames() -> None:
    now = 1_000_000
    cams = {
        "down": CameraState(
            "down",
            in_inventory=True,
            connection="FAILED",
            connection_reason="connection refused",
            connection_since_ms=now - 300_000,
        ),
        "blip": CameraState("blip", in_inventory=True, connection="RECONNECTING", connection_since_ms=now - 5_000),
        "frozen": CameraState(
            "frozen",
            in_inventory=True,
            connection="ONLINE",
            connection_since_ms=now - 900_000,
            last_frame_ms=now - 200_000,
        ),
        "fine": CameraState(
            "fine", in_inventory=True, connection="ONLINE", connection_since_ms=now - 900_000, last_frame_ms=now - 1_000
        ),
        "disabled": CameraState(
            "disabled", in_inventory=True, enabled=False, connection="FAILED", connection_since_ms=0
        ),
    }
    found = {m["camera_id"]: m for m in maintenance_alerts(cams, now, silent_after_s=120)}
    assert set(found) == {"down", "frozen"}
    assert found["down"]["kind"] == "offline" and "connection refused" in found["down"]["reason"]
    assert found["frozen"]["kind"] == "silent" and found["frozen"]["since_ms"] == now - 200_000


def test_camera_status_since_changes_only_with_the_state() -> None:
    camera = CameraState("c")
    camera.apply_status({"state": "ONLINE", "timestamp": 100, "reason": None})
    camera.apply_status({"state": "ONLINE", "timestamp": 200, "reason": None})
    assert camera.connection_since_ms == 100
    camera.apply_status({"state": "RECONNECTING", "timestamp": 300, "reason": "read timeout"})
    assert camera.connection_since_ms == 300 and camera.connection_reason == "read timeout"


def test_distance_and_radius_search() -> None:
    # One degree of latitude is ~111.2 km everywhere.
    assert distance_m(37.0, 127.0, 38.0, 127.0) == pytest.approx(111_195, rel=1e-3)
    near = CameraState("near", location={"lat": 37.5665, "lon": 126.9780})
    far = CameraState("far", location={"lat": 37.5765, "lon": 126.9780})  # ~1.1 km north
    nowhere = CameraState("nowhere")
    found = cameras_within([far, nowhere, near], 37.5666, 126.9780, 500)
    assert [c.camera_id for c, _ in found] == ["near"] and found[0][1] == pytest.approx(11.1, abs=0.5)


def test_dev_users_are_random_private_and_never_overwritten(tmp_path: Path) -> None:
    created = ensure_dev_users(tmp_path)
    assert set(created) == {"admin", "operator"} and created["admin"] != created["operator"]
    assert all(len(p) >= 16 for p in created.values())
    credentials = tmp_path / "console-credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "console-users.yaml").stat().st_mode) == 0o600
    assert credentials.read_text().splitlines() == [f"admin:{created['admin']}", f"operator:{created['operator']}"]
    assert ensure_dev_users(tmp_path) == {}, "a second start keeps the first passwords"
    assert credentials.read_text().splitlines() == [f"admin:{created['admin']}", f"operator:{created['operator']}"]
    store = UserStore(tmp_path / "console-users.yaml")
    assert store.authenticate("admin", created["admin"]).role == "admin"
    assert store.authenticate("admin", created["operator"]) is None
    assert created["admin"] not in (tmp_path / "console-users.yaml").read_text()


def test_user_store_checks_passwords_roles_and_restrictions_and_follows_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "users": {
                    "kim": {"password_hash": hash_password("correct horse"), "role": "viewer", "cameras": ["cam-1"]},
                }
            }
        )
    )
    store = UserStore(path)
    assert store.authenticate("kim", "wrong") is None and store.authenticate("nobody", "correct horse") is None
    kim = store.authenticate("kim", "correct horse")
    assert kim.can_see("cam-1") and not kim.can_see("cam-2")
    assert not allowed(kim.role, "act") and allowed("operator", "act") and not allowed("operator", "audit")
    path.write_text(
        yaml.safe_dump({"users": {"lee": {"password_hash": hash_password("pw-of-lee-123"), "role": "admin"}}})
    )
    import os

    os.utime(path, (1, 2))  # a different mtime, as a rotated Secret has
    assert store.get("kim") is None and store.get("lee").role == "admin"
    path.write_text("users: {bad: {role: god}}")
    with pytest.raises(ValueError, match="bad"):
        UserStore(path)


def test_sessions_and_tokens_are_signed_and_csrf_protects_cookie_writes() -> None:
    signer = Signer("k" * 40, 3600, 3600)
    cookie, csrf = signer.new_session("kim")
    credential = signer.read_session(cookie)
    assert credential.username == "kim" and csrf_ok(credential, csrf)
    assert not csrf_ok(credential, None) and not csrf_ok(credential, "forged")
    assert signer.read_session(cookie[:-2] + "xx") is None
    assert Signer("other-key" * 5, 3600, 3600).read_session(cookie) is None, "another key: another deployment"
    token = signer.new_token("kim")
    assert signer.read_token(token).username == "kim" and signer.read_session(token) is None
    assert csrf_ok(signer.read_token(token), None), "bearer tokens are not sent by browsers on their own"


def test_login_throttle_locks_a_name_after_repeated_failures_and_forgets_after_success() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=60, lockout_s=120)
    kim, lee = ("user:kim",), ("user:lee",)
    for second in (0, 1):
        throttle.failed(kim, second)
    assert throttle.retry_after(kim, 2) == 0
    throttle.succeeded(kim)  # a success clears the count
    for second in (10, 11, 12):
        throttle.failed(kim, second)
    assert throttle.retry_after(kim, 13) == pytest.approx(119) and throttle.retry_after(lee, 13) == 0
    assert throttle.retry_after(kim, 133) == 0, "the lockout ends"
    for second in (200, 300, 400):  # failures far apart (outside the window) never lock
        throttle.failed(lee, second)
    assert throttle.retry_after(lee, 401) == 0
