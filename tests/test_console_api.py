"""The console's API against a real broker and registry, the console running as its own process:
every endpoint, bad input, roles and restrictions, the audit ledger, and state rebuilt from topics."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from cctv.inventory import publish
from libs.cameras import CameraEntry, GeoPoint
from libs.kafka import create_topics, make_producer
from libs.serde import make_serde
from libs.settings import KafkaSettings, RegistrySettings
from libs.topics import (
    ALERTS,
    AUDIT,
    CAMERA_ACTIVITY,
    CAMERA_STATUS,
    FRAMES,
    INCIDENT_ACTIONS,
    PLATFORM_EVENTS,
    pipeline_topics,
)
from tests.console_helpers import PASSWORDS, ConsoleProcess, wait_json, write_users
from tests.kafka_helpers import frame_record

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffdb004300") + b"\x08" * 64 + b"\xff\xd9"


class Stack:
    def __init__(self, kafka: KafkaSettings, registry_url: str, suffix: str, tmp: Path) -> None:
        self.kafka, self.registry_url, self.tmp = kafka, registry_url, tmp
        self.serde = make_serde(RegistrySettings(url=registry_url))
        self.producer = make_producer(kafka, "console-test")
        self.cam_a, self.cam_b = f"con-a-{suffix}", f"con-b-{suffix}"
        self.users_file = write_users(tmp / "users.yaml", [self.cam_a])
        self.env = {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "CCTV_REGISTRY__URL": registry_url,
            "CCTV_USERS_FILE": str(self.users_file),
            "CCTV_SESSION_KEY": "test-session-key-" + "x" * 32,
            "CCTV_LOG__FORMAT": "text",
            "CCTV_LAG_INTERVAL_S": "2",
            "CCTV_SILENT_AFTER_S": "2",
        }

    def send(self, topic: str, schema: str, key: str, value: dict) -> None:
        self.producer.produce(topic, key=key.encode(), value=self.serde.serialize(topic, schema, value))
        assert self.producer.flush(30) == 0

    def alert(self, alert_id: str, camera: str, kind: str = "NEW", sequence: int = 0, severity: str = "HIGH") -> None:
        now_us = int(time.time() * 1e6)
        self.send(
            ALERTS,
            "Alert",
            alert_id,
            {
                "alert_id": alert_id,
                "kind": kind,
                "sequence": sequence,
                "event_type": "intrusion",
                "rule_id": "intrusion",
                "severity": severity,
                "camera_id": camera,
                "camera_name": camera.upper(),
                "site_id": "campus",
                "location": None,
                "tags": [],
                "zone_id": "road",
                "zone_name": "road",
                "started_at": now_us,
                "detected_at": now_us,
                "ended_at": now_us if kind == "END" else None,
                "track_ids": [1],
                "objects": [
                    {"track_id": 1, "class_name": "person", "score": 0.9, "x1": 0.1, "y1": 0.1, "x2": 0.3, "y2": 0.6}
                ],
                "frame": None,
                "snapshot_jpeg": JPEG,
                "description": f"person entered road on {camera}",
                "destinations": ["police"],
                "produced_at": now_us,
            },
        )


@pytest.fixture(scope="module")
def stack(kafka_broker, schema_registry, tmp_path_factory) -> Iterator[Stack]:
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)
    create_topics(kafka, pipeline_topics())
    tmp = tmp_path_factory.mktemp("console")
    stack = Stack(kafka, schema_registry.url, uuid.uuid4().hex[:8], tmp)
    entries = [
        CameraEntry(
            camera_id=stack.cam_a,
            name="Gate A",
            site_id="campus",
            stream_url="file:///dev/null",
            location=GeoPoint(lat=37.5665, lon=126.9780),
        ),
        CameraEntry(
            camera_id=stack.cam_b,
            name="Gate B",
            site_id="campus",
            stream_url="file:///dev/null",
            location=GeoPoint(lat=37.5765, lon=126.9780),
        ),
    ]
    publish(kafka, stack.serde, entries)
    yield stack
    publish(kafka, stack.serde, [], [stack.cam_a, stack.cam_b])


@pytest.fixture(scope="module")
def console(stack: Stack) -> Iterator[ConsoleProcess]:
    process = ConsoleProcess(stack.env, stack.tmp / "console.log").start()
    yield process
    assert process.stop() == 0, (stack.tmp / "console.log").read_text()[-3000:]


def audit_has(admin: httpx.Client, **match: str) -> dict:
    def matching(records: list[dict]) -> list[dict]:
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]

    page = wait_json(admin, "/api/v1/audit?limit=2000", lambda d: matching(d["records"]), 30, f"audit record {match}")
    return matching(page["records"])[0]


def test_login_gives_a_token_and_a_cookie_and_refuses_without_saying_which_part_was_wrong(
    console: ConsoleProcess,
) -> None:
    with console.client() as anonymous:
        ok = anonymous.post("/api/v1/login", json={"username": "operator", "password": PASSWORDS["operator"]})
        assert ok.status_code == 200 and ok.json()["token"] and ok.json()["user"]["role"] == "operator"
        cookie = ok.headers["set-cookie"].lower()
        assert "cctv_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        wrong_password = anonymous.post("/api/v1/login", json={"username": "operator", "password": "nope"})
        unknown_user = anonymous.post(
            "/api/v1/login", json={"username": "nobody-" + uuid.uuid4().hex[:6], "password": "nope"}
        )
        assert wrong_password.status_code == unknown_user.status_code == 401
        assert wrong_password.json() == unknown_user.json() == {"detail": "invalid username or password"}
        assert anonymous.post("/api/v1/login", json={"username": "operator"}).status_code == 422
        guesser = "guess-" + uuid.uuid4().hex[:6]
        answers = [
            anonymous.post("/api/v1/login", json={"username": guesser, "password": f"try-{n}"}).status_code
            for n in range(6)
        ]
        assert answers == [401] * 5 + [429], "the sixth guess within 5 minutes is refused outright"
        anonymous.cookies.clear()
        assert anonymous.get("/api/v1/wall").status_code == 401
        assert anonymous.get("/api/v1/wall", headers={"Authorization": "Bearer forged.token.value"}).status_code == 401
    with console.client("admin") as admin:
        record = audit_has(admin, what="login_failed", actor="operator")
        assert record["outcome"] == "DENIED" and record["client_address"] == "127.0.0.1"
        assert record["detail"] == "wrong password"
        unknown = audit_has(admin, what="login_failed", detail="unknown user name")
        assert unknown["actor"].startswith("unknown-user:") and "nobody" not in unknown["actor"]
        assert "nope" not in str(admin.get("/api/v1/audit").json()), "no password in the ledger"
        audit_has(admin, what="login", actor="operator", outcome="ALLOWED")


def test_openapi_lists_the_endpoints_and_the_page_loads_nothing_from_elsewhere(console: ConsoleProcess) -> None:
    page = httpx.get(console.url)
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace(console.url, ""), "no CDN or remote asset in the page"
    paths = httpx.get(f"{console.url}/api/v1/openapi.json").json()["paths"]
    for path in (
        "/api/v1/login",
        "/api/v1/wall",
        "/api/v1/incidents",
        "/api/v1/incidents/{alert_id}/actions",
        "/api/v1/cameras",
        "/api/v1/audit",
        "/api/v1/health",
    ):
        assert path in paths


def test_wall_shows_active_cameras_with_their_latest_frame(stack: Stack, console: ConsoleProcess) -> None:
    now_us = int(time.time() * 1e6)
    stack.send(
        CAMERA_ACTIVITY,
        "CameraActivity",
        stack.cam_a,
        {"camera_id": stack.cam_a, "state": "ACTIVE", "motion_score": 0.2, "since": now_us, "timestamp": now_us},
    )
    with console.client("operator") as operator:
        wall = wait_json(
            operator,
            "/api/v1/wall",
            lambda w: stack.cam_a in [t["camera_id"] for t in w["tiles"]],
            what="camera A on the wall",
        )
        assert stack.cam_b not in [t["camera_id"] for t in wall["tiles"]] and wall["idle_count"] >= 1
        assert operator.get(f"/api/v1/cameras/{stack.cam_a}/frame.jpg").status_code in (404, 200)
        for sequence in (1, 2):
            stack.send(
                FRAMES,
                "Frame",
                stack.cam_a,
                frame_record(stack.cam_a, sequence, JPEG, capture_us=now_us + sequence, sampled_at=now_us),
            )

        def second_frame() -> httpx.Response | None:
            response = operator.get(f"/api/v1/cameras/{stack.cam_a}/frame.jpg")
            return response if response.status_code == 200 and response.headers["x-frame-sequence"] == "2" else None

        from tests.kafka_helpers import wait_for

        frame = wait_for(second_frame, 30, "the latest frame of camera A")
        assert frame.content == JPEG and frame.headers["x-capture-time-us"] == str(now_us + 2)
        assert operator.get(f"/api/v1/cameras/{stack.cam_a}/frame.jpg?after=2").status_code == 204
        # Long-poll: asked while no newer frame exists, answered when frame 3 arrives, not at the timeout.
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            asked = time.monotonic()
            pending = pool.submit(
                operator.get, f"/api/v1/cameras/{stack.cam_a}/frame.jpg", params={"after": 2, "wait_s": 10}
            )
            stack.send(
                FRAMES,
                "Frame",
                stack.cam_a,
                frame_record(stack.cam_a, 3, JPEG, capture_us=now_us + 3, sampled_at=now_us),
            )
            woken = pending.result(timeout=30)
        assert woken.status_code == 200 and woken.headers["x-frame-sequence"] == "3"
        assert time.monotonic() - asked < 9, "answered when the frame came, before the 10 s timeout"
        assert operator.get(f"/api/v1/cameras/{stack.cam_a}/frame.jpg", params={"wait_s": 11}).status_code == 422
        # The wall's event stream names the camera as soon as its next frame is in.
        with operator.stream("GET", "/api/v1/wall/frames") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.iter_lines()
            assert next(lines).startswith("retry:")
            stack.send(
                FRAMES,
                "Frame",
                stack.cam_a,
                frame_record(stack.cam_a, 4, JPEG, capture_us=now_us + 4, sampled_at=now_us),
            )
            deadline, notice = time.monotonic() + 40, None
            for line in lines:  # a keep-alive comment comes every 15 s, so the deadline is checked
                if line.startswith("data:") and stack.cam_a in line:
                    notice = json.loads(line[5:])
                    break
                if time.monotonic() > deadline:
                    break
            assert notice is not None and notice["detections"] is None
            assert {k: notice[k] for k in ("camera_id", "sequence", "capture_time_us")} == {
                "camera_id": stack.cam_a,
                "sequence": 4,
                "capture_time_us": now_us + 4,
            }
        with console.client("admin") as admin:
            audit_has(admin, what="live_view", actor="operator", detail="wall")  # opening the wall is a live view
        assert operator.get("/api/v1/cameras/no-such-camera/frame.jpg").status_code == 404
        assert operator.post("/api/v1/latency", json={"samples_ms": [120.0, 80.0]}).json()["count"] >= 2
        assert operator.post("/api/v1/latency", json={"samples_ms": "fast"}).status_code == 422


def test_incident_workflow_records_actions_on_the_topic(stack: Stack, console: ConsoleProcess) -> None:
    alert_id = str(uuid.uuid4())
    stack.alert(alert_id, stack.cam_a, severity="CRITICAL")
    with console.client("operator") as operator:
        wait_json(
            operator, "/api/v1/incidents?state=open", lambda d: alert_id in [i["alert_id"] for i in d["incidents"]]
        )
        wall = operator.get("/api/v1/wall").json()
        assert wall["tiles"][0]["camera_id"] == stack.cam_a and wall["tiles"][0]["incident"]["alert_id"] == alert_id
        snapshot = operator.get(f"/api/v1/incidents/{alert_id}/snapshot.jpg")
        assert snapshot.status_code == 200 and snapshot.content == JPEG
        actions = f"/api/v1/incidents/{alert_id}/actions"
        acked = operator.post(actions, json={"action": "acknowledge"})
        assert acked.status_code == 201 and acked.json()["status"] == "acknowledged"
        assert (
            operator.post(actions, json={"action": "assign", "assignee": "patrol-7"}).json()["assignee"] == "patrol-7"
        )
        assert operator.post(actions, json={"action": "comment", "comment": "patrol on the way"}).status_code == 201
        bad = operator.post(actions, json={"action": "explode"})
        assert bad.status_code == 422 and "acknowledge" in bad.text
        assert operator.post(actions, json={"action": "assign"}).status_code == 422
        assert operator.post(actions, json={"action": "comment", "comment": "x" * 2001}).status_code == 422
        missing = operator.post(f"/api/v1/incidents/{uuid.uuid4()}/actions", json={"action": "close"})
        assert missing.status_code == 404 and "no incident" in missing.json()["detail"]
        assert operator.get(f"/api/v1/incidents/{uuid.uuid4()}").status_code == 404
        closed = operator.post(actions, json={"action": "false_alarm", "comment": "a shadow"})
        assert closed.json()["status"] == "closed" and closed.json()["false_alarm"]
        assert operator.post(actions, json={"action": "acknowledge"}).status_code == 409
        assert operator.post(actions, json={"action": "reopen"}).status_code == 403, "reopening is for supervisors"
        assert alert_id not in [i["alert_id"] for i in operator.get("/api/v1/incidents?state=open").json()["incidents"]]
        assert alert_id in [i["alert_id"] for i in operator.get("/api/v1/incidents?state=closed").json()["incidents"]]
        assert operator.get("/api/v1/incidents?state=bogus").status_code == 422
        counts = operator.get("/api/v1/false-alarms").json()["false_alarms"]
        assert {"camera_id": stack.cam_a, "zone_id": "road", "rule_id": "intrusion", "false_alarms": 1} in counts
    # A downstream consumer reads the actions with the registry's plain Avro deserializer.
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": stack.registry_url}))
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka.bootstrap_servers,
            "group.id": f"t-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([INCIDENT_ACTIONS])
    found: list[dict] = []
    deadline = time.monotonic() + 30
    while len(found) < 4 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error() and message.key() == alert_id.encode():
            found.append(deserialize(message.value(), SerializationContext(INCIDENT_ACTIONS, MessageField.VALUE)))
    consumer.close()
    assert [r["action"] for r in found] == ["ACKNOWLEDGE", "ASSIGN", "COMMENT", "FALSE_ALARM"]
    assert {r["operator"] for r in found} == {"operator"} and found[1]["assignee"] == "patrol-7"
    assert found[3]["camera_id"] == stack.cam_a and found[3]["comment"] == "a shadow"


def test_cookie_sessions_need_the_csrf_token_for_writes(stack: Stack, console: ConsoleProcess) -> None:
    alert_id = str(uuid.uuid4())
    stack.alert(alert_id, stack.cam_a)
    with httpx.Client(base_url=console.url, timeout=30) as browser:
        login = browser.post("/api/v1/login", json={"username": "operator", "password": PASSWORDS["operator"]})
        csrf = login.json()["csrf_token"]
        me = browser.get("/api/v1/me").json()
        assert me["csrf_token"] == csrf and me["may_act"] and not me["may_reopen"] and not me["may_audit"]
        wait_json(browser, f"/api/v1/incidents/{alert_id}", lambda d: True)
        forged = browser.post(f"/api/v1/incidents/{alert_id}/actions", json={"action": "acknowledge"})
        assert forged.status_code == 403 and "X-CSRF-Token" in forged.text
        ok = browser.post(
            f"/api/v1/incidents/{alert_id}/actions", json={"action": "acknowledge"}, headers={"X-CSRF-Token": csrf}
        )
        assert ok.status_code == 201


def test_viewer_cannot_act_and_restricted_user_cannot_see_other_cameras(stack: Stack, console: ConsoleProcess) -> None:
    on_b = str(uuid.uuid4())
    stack.alert(on_b, stack.cam_b, severity="LOW")
    with console.client("viewer") as viewer, console.client("partner") as partner, console.client("admin") as admin:
        wait_json(viewer, "/api/v1/incidents?state=all", lambda d: on_b in [i["alert_id"] for i in d["incidents"]])
        refused = viewer.post(f"/api/v1/incidents/{on_b}/actions", json={"action": "acknowledge"})
        assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
        assert viewer.get("/api/v1/audit").status_code == 403
        audit_has(admin, what="access_denied", actor="viewer", alert_id=on_b)
        assert on_b not in [i["alert_id"] for i in partner.get("/api/v1/incidents?state=all").json()["incidents"]]
        assert [c["camera_id"] for c in partner.get("/api/v1/cameras").json()["cameras"]] == [stack.cam_a]
        assert partner.get(f"/api/v1/cameras/{stack.cam_b}").status_code == 403
        assert partner.get(f"/api/v1/cameras/{stack.cam_b}/frame.jpg").status_code == 403
        assert partner.get(f"/api/v1/incidents/{on_b}").status_code == 403
        denied = audit_has(admin, what="access_denied", actor="partner", camera_id=stack.cam_b)
        assert denied["outcome"] == "DENIED"
        assert partner.get(f"/api/v1/cameras/{stack.cam_a}").status_code == 200
        audit_has(admin, what="live_view", actor="partner", camera_id=stack.cam_a)
    # The ledger is on Kafka, not only in memory: read it back with a plain consumer.
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka.bootstrap_servers,
            "group.id": f"t-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(AUDIT, timeout=10).topics[AUDIT].partitions
    consumer.assign([TopicPartition(AUDIT, p, 0) for p in partitions])
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": stack.registry_url}))
    deadline, seen = time.monotonic() + 30, False
    while not seen and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error() and message.key() == b"partner":
            record = deserialize(message.value(), SerializationContext(AUDIT, MessageField.VALUE))
            seen = record["what"] == "access_denied" and record["camera_id"] == stack.cam_b
    consumer.close()
    assert seen, "the denied access is on cctv.audit.v1"


def test_cameras_radius_search_and_health(stack: Stack, console: ConsoleProcess) -> None:
    now_ms = int(time.time() * 1000)
    stack.send(
        CAMERA_STATUS,
        "CameraStatus",
        stack.cam_b,
        {
            "camera_id": stack.cam_b,
            "session_id": None,
            "state": "FAILED",
            "reason": "connection refused",
            "fps": None,
            "bitrate_bps": None,
            "last_packet_time": None,
            "reconnect_attempt": 5,
            "ingest_instance": "i1",
            "timestamp": now_ms,
        },
    )
    stack.send(
        PLATFORM_EVENTS,
        "PlatformEvent",
        "detector",
        {
            "service": "detector",
            "instance": "h:1",
            "event": "RESTARTING",
            "detail": "exit code 1, restart 1 in 2 s",
            "exit_code": 1,
            "restarts": 1,
            "timestamp": now_ms,
        },
    )
    with console.client("operator") as operator:
        near = operator.get("/api/v1/cameras", params={"lat": 37.5666, "lon": 126.9780, "radius_m": 500}).json()
        ours = [c for c in near["cameras"] if c["camera_id"] in (stack.cam_a, stack.cam_b)]  # B is 1.1 km away
        assert [c["camera_id"] for c in ours] == [stack.cam_a] and ours[0]["distance_m"] < 50
        assert all(c["distance_m"] <= 500 for c in near["cameras"])
        assert operator.get("/api/v1/cameras", params={"lat": 37.5}).status_code == 422
        assert operator.get("/api/v1/cameras", params={"lat": 95, "lon": 0, "radius_m": 1}).status_code == 422
        health = wait_json(
            operator,
            "/api/v1/health",
            lambda h: (
                any(p["camera_id"] == stack.cam_b and p["connection"] == "FAILED" for p in h["problems"])
                and any(e["service"] == "detector" for e in h["platform"]["recent_trouble"])
            ),
        )
        problem = next(p for p in health["problems"] if p["camera_id"] == stack.cam_b)
        assert problem["connection_reason"] == "connection refused" and problem["connection_since_ms"] == now_ms
        assert set(health["pipeline_lag"]) == {"cctv-frame-sampler", "cctv-detector", "cctv-alert-router"}
        wall = operator.get("/api/v1/wall").json()
        assert wall["platform"]["recent_trouble"][0]["service"] == "detector"
        # Failed for longer than the threshold (2 s here): a maintenance alert, counted on the wall too.
        health = wait_json(
            operator,
            "/api/v1/health",
            lambda h: any(m["camera_id"] == stack.cam_b for m in h["maintenance"]),
            what="camera B's maintenance alert",
        )
        alert = next(m for m in health["maintenance"] if m["camera_id"] == stack.cam_b)
        assert alert["kind"] == "offline" and "connection refused" in alert["reason"]
        assert operator.get("/api/v1/wall").json()["maintenance"] >= 1
        assert operator.get("/api/v1/platform-events").status_code == 200


def test_a_second_replica_rebuilds_the_same_state_from_the_topics(stack: Stack, console: ConsoleProcess) -> None:
    alert_id = str(uuid.uuid4())
    stack.alert(alert_id, stack.cam_a, severity="MEDIUM")
    with console.client("operator") as operator:
        wait_json(operator, f"/api/v1/incidents/{alert_id}", lambda d: True)
        operator.post(
            f"/api/v1/incidents/{alert_id}/actions", json={"action": "assign", "assignee": "kim"}
        ).raise_for_status()
        first = operator.get(f"/api/v1/incidents/{alert_id}").json()
    replica = ConsoleProcess(stack.env, stack.tmp / "replica.log").start()
    try:
        with replica.client("operator2") as other:
            second = wait_json(other, f"/api/v1/incidents/{alert_id}", lambda d: d["assignee"] == "kim")
            assert second["status"] == first["status"] == "acknowledged"
            assert [a["action_id"] for a in second["actions"]] == [a["action_id"] for a in first["actions"]]
            closed = other.post(f"/api/v1/incidents/{alert_id}/actions", json={"action": "close"})
            assert closed.status_code == 201
        with console.client("operator") as operator:
            wait_json(
                operator,
                f"/api/v1/incidents/{alert_id}",
                lambda d: d["status"] == "closed" and d["closed_by"] == "operator2",
                what="the first replica to see the second one's close",
            )
    finally:
        assert replica.stop() == 0


def test_dev_users_are_created_once_printed_once_and_work(stack: Stack, tmp_path: Path) -> None:
    """What `cctv up` runs: `cctv-console --dev-users run/` with no users file and no session key."""
    run_dir = tmp_path / "run"
    env = {k: v for k, v in stack.env.items() if k not in ("CCTV_USERS_FILE", "CCTV_SESSION_KEY")}
    log = tmp_path / "dev-console.log"
    first = ConsoleProcess(env, log, args=("--dev-users", str(run_dir))).start()
    try:
        lines = dict(line.split(":", 1) for line in (run_dir / "console-credentials").read_text().splitlines())
        assert set(lines) == {"admin", "operator"}
        assert (run_dir / "console-credentials").stat().st_mode & 0o777 == 0o600
        for name, password in lines.items():
            assert f"console login created: {name} / {password}" in log.read_text()
            login = httpx.post(f"{first.url}/api/v1/login", json={"username": name, "password": password})
            assert login.status_code == 200 and login.json()["user"]["role"] == name
    finally:
        assert first.stop() == 0
    printed = log.read_text().count("console login created")
    again = ConsoleProcess(env, log, args=("--dev-users", str(run_dir))).start()
    try:
        assert log.read_text().count("console login created") == printed, "existing logins are not printed again"
        login = httpx.post(f"{again.url}/api/v1/login", json={"username": "admin", "password": lines["admin"]})
        assert login.status_code == 200, "the same password still works after a restart"
    finally:
        assert again.stop() == 0


def test_console_refuses_to_start_without_users_or_session_key(stack: Stack, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in stack.env.items() if k not in ("CCTV_USERS_FILE", "CCTV_SESSION_KEY")}
    result = subprocess.run(
        [sys.executable, "-m", "services.console.main"],
        env=os.environ | env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "CCTV_USERS_FILE" in result.stderr and "--dev-users" in result.stderr
    short = subprocess.run(
        [sys.executable, "-m", "services.console.main"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | env | {"CCTV_USERS_FILE": str(stack.users_file), "CCTV_SESSION_KEY": "short"},
    )
    assert short.returncode == 2 and "shorter than 32" in short.stderr
