"""Dispatcher: pure pieces through plain functions, then the service against a real Kafka broker and
real HTTP receivers on 127.0.0.1 (tests/webhook_receiver.py)."""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from PIL import Image
from pydantic import ValidationError

from cctv.devstack.services import ServiceProcess
from libs.destinations import DestinationDelivery, SecretRef
from libs.kafka import create_topics, high_watermark, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import AUDIT, DLQ, destination_topic, pipeline_topics
from services.alert_router.routing import RoutingConfigError, RoutingTable
from services.dispatcher.core import OffsetTracker, backoff_delay, retryable
from services.dispatcher.events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    cloud_event,
    encode,
    signed_headers,
)
from services.dispatcher.verify import verify
from tests.assets_fetch import fetch_stills
from tests.kafka_helpers import TopicWatcher, alert_record, free_port, read_topic, wait_for
from tests.masking_helpers import shared_detail
from tests.pipeline_helpers import service_env
from tests.webhook_receiver import Receiver

SERDE = AvroSerde(shipped_catalog())
SECRET = b"test-webhook-secret-0123456789"


def alert(alert_id: str, kind: str = "NEW", sequence: int = 0, camera: str = "cam-1") -> dict:
    now_us = time.time_ns() // 1000
    return alert_record(
        alert_id,
        camera,
        kind,
        sequence,
        started_us=now_us,
        ended_us=now_us if kind == "END" else None,
        snapshot_jpeg=b"\xff\xd8jpeg",
        produced_at=now_us,
    )


# --- pure pieces ------------------------------------------------------------------------------------


def test_cloud_event_is_cloudevents_1_0_with_idempotent_id_and_no_bytes() -> None:
    event = cloud_event(alert("a-1", "UPDATE", 3), "police")
    assert event["specversion"] == "1.0" and event["type"] == "org.cctv.alert.update"
    assert event["id"] == "a-1:update:3" and event["source"] and event["subject"] == "cam-1"
    assert event["time"].endswith("Z") and event["data"]["started_at"].endswith("Z")
    assert "snapshot_jpeg" not in event["data"] and event["data"]["has_snapshot"] is True
    json.loads(encode(event))  # serialisable as-is


def test_example_verifier_accepts_the_signature_and_rejects_tampering_and_replays() -> None:
    body = encode(cloud_event(alert("a-2"), "fire"))
    now = int(time.time())
    headers = signed_headers(SECRET, now, body, {"id": "a-2:new:0"})
    stamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert verify(SECRET, stamp, signature, body)
    assert not verify(SECRET, stamp, signature, body.replace(b"fire", b"fira"))  # body changed
    assert not verify(b"another-secret", stamp, signature, body)
    assert not verify(SECRET, str(now + 1), signature, body)  # timestamp changed
    assert not verify(SECRET, stamp, signature, body, now=now + 3600)  # replayed an hour later
    assert not verify(SECRET, stamp, None, body) and not verify(SECRET, "soon", signature, body)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, 1.0, 30.0, rng) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(30.0, 2.0 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[6:]}) > 1  # capped delays still differ: jitter
    with pytest.raises(ValueError):
        backoff_delay(0, 1.0, 30.0)
    assert retryable(500) and retryable(503) and retryable(429) and not retryable(400) and not retryable(401)


def test_offsets_commit_only_below_the_oldest_undelivered_alert() -> None:
    tracker = OffsetTracker()
    tracker.add("t", 0, 10, 2)  # two endpoints
    tracker.add("t", 0, 11, 1)
    tracker.add("t", 0, 12, 0)  # dead-lettered at once
    assert tracker.committable() == {("t", 0): 10}
    tracker.done("t", 0, 11)
    tracker.done("t", 0, 10)
    assert tracker.committable() == {("t", 0): 10}  # one endpoint of offset 10 still pending
    tracker.done("t", 0, 10)
    assert tracker.committable() == {("t", 0): 13}
    tracker.forget({("t", 0)})
    tracker.done("t", 0, 10)  # late completion after a revoke: ignored
    assert tracker.committable() == {}


def test_routing_file_endpoints_are_validated(tmp_path: Path) -> None:
    good = {
        "routes": [],
        "endpoints": {
            "police": {
                "webhooks": [
                    {"name": "hq", "url": "https://police.example/hook", "secret": {"env": "POLICE_HOOK_SECRET"}}
                ]
            }
        },
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(good))
    assert RoutingTable.from_yaml(path).endpoints["police"].webhooks[0].name == "hq"
    for bad, complaint in [
        ({"police": {"webhooks": [{"name": "x", "url": "ftp://a/b", "secret": {"env": "S"}}]}}, "http"),
        ({"police": {"webhooks": [{"name": "x", "url": "https://u:p@a/b", "secret": {"env": "S"}}]}}, "credentials"),
        ({"police": {"webhooks": [{"name": "x", "url": "https://a/b", "secret": {}}]}}, "exactly one"),
        ({"Police!": {"webhooks": []}}, "topic-safe"),
    ]:
        path.write_text(yaml.safe_dump({"routes": [], "endpoints": bad}))
        with pytest.raises(RoutingConfigError, match=complaint):
            RoutingTable.from_yaml(path)


def test_secret_reference_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCTV_TEST_NO_SUCH_SECRET", raising=False)
    with pytest.raises(ValueError, match="CCTV_TEST_NO_SUCH_SECRET"):
        SecretRef(env="CCTV_TEST_NO_SUCH_SECRET").read()
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n")
    assert SecretRef(file=secret_file).read() == b"s3cret"
    with pytest.raises(ValidationError):
        DestinationDelivery.model_validate(
            {
                "webhooks": [
                    {"name": "a", "url": "http://x/", "secret": {"env": "A"}},
                    {"name": "a", "url": "http://y/", "secret": {"env": "A"}},
                ]
            }
        )


# --- the service ------------------------------------------------------------------------------------

DESTINATIONS = ("police", "fire", "disaster-management")


def position_group_at_end(kafka: KafkaSettings, group: str) -> None:
    """The new group starts at the topics' current ends, not at other runs' old alerts."""
    consumer = Consumer(kafka.client_config() | {"group.id": group, "enable.auto.commit": False})
    offsets = []
    for destination in DESTINATIONS:
        topic = destination_topic(destination)
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            offsets.append(TopicPartition(topic, partition, high_watermark(consumer, topic, partition)))
    consumer.commit(offsets=offsets, asynchronous=False)
    consumer.close()


def publish(kafka: KafkaSettings, destination: str, *records: dict) -> None:
    producer = make_producer(kafka, "test-routed-alerts")
    topic = destination_topic(destination)
    for record in records:
        producer.produce(topic, key=record["alert_id"], value=SERDE.serialize(topic, "Alert", record))
    assert producer.flush(30) == 0


def test_dispatcher_delivers_signed_events_retries_dead_letters_and_isolates_endpoints(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    group = f"dispatcher-{unique}"
    position_group_at_end(kafka_settings, group)
    flaky = Receiver(SECRET, fail_first=3).start()  # police: 500 three times, then recovers
    dead = Receiver(SECRET, fail_first=10**6, hold=threading.Event()).start()  # fire: hangs, then 500s
    healthy = Receiver(SECRET).start()  # disaster-management
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text(SECRET.decode())
    routes = tmp_path / "routes.yaml"

    def hook(name: str, receiver: Receiver, **extra: object) -> dict:
        return {"webhooks": [{"name": name, "url": receiver.url, **extra}]}

    routes.write_text(
        yaml.safe_dump(
            {
                "routes": [],
                "endpoints": {
                    "police": hook("hq", flaky, secret={"env": "CCTV_TEST_POLICE_HOOK_SECRET"}),
                    "fire": hook("station", dead, secret={"file": str(secret_file)}, timeout_s=60, max_attempts=2),
                    "disaster-management": hook("ndms", healthy, secret={"file": str(secret_file)}),
                },
            }
        )
    )
    metrics_port = free_port()
    env = service_env(kafka_settings.bootstrap_servers, http_port=metrics_port, group=group) | {
        "CCTV_ROUTES_FILE": str(routes),
        "CCTV_RETRY_INITIAL_S": "0.2",
        "CCTV_RETRY_MAX_S": "1",
        "CCTV_COMMIT_INTERVAL_S": "0.5",
        "CCTV_TEST_POLICE_HOOK_SECRET": SECRET.decode(),
    }
    log_file = tmp_path / "dispatcher.log"
    service = ServiceProcess("dispatcher", env, log_file, module="services.dispatcher.main").start()
    try:
        fire_1, fire_2 = f"{unique}-fire-1", f"{unique}-fire-2"
        publish(kafka_settings, "fire", alert(fire_1), alert(fire_2))
        wait_for(lambda: dead.held_now >= 1, 60, "the dead endpoint to hold the first fire event")

        # A dead endpoint does not delay another destination.
        ndms = f"{unique}-crowd"
        publish(kafka_settings, "disaster-management", alert(ndms))
        wait_for(lambda: healthy.accepted_ids() == [f"{ndms}:new:0"], 30, "the healthy endpoint's event")
        assert dead.held_now == 1 and dead.accepted == []  # still stuck on its first event meanwhile

        # Retries while the endpoint answers 500, then delivery in incident order, each once.
        incident = f"{unique}-intrusion"
        publish(
            kafka_settings, "police", alert(incident, "NEW", 0), alert(incident, "UPDATE", 1), alert(incident, "END", 2)
        )
        expected = [f"{incident}:new:0", f"{incident}:update:1", f"{incident}:end:2"]
        wait_for(lambda: len(flaky.accepted_ids()) >= 3, 60, "the police events after the endpoint recovered")
        assert flaky.attempts[:4] == [expected[0]] * 4  # three 500s, then accepted
        assert flaky.accepted_ids() == expected  # in order, no duplicate even before deduplication
        first = flaky.accepted[0]
        assert first["specversion"] == "1.0" and first["destination"] == "police"
        assert first["_headers"]["Idempotency-Key"] == expected[0]

        # The example verifier (inside the receiver) refuses a forged request.
        forged = encode(cloud_event(alert(incident, "END", 9), "police"))
        response = httpx.post(
            flaky.url, content=forged, headers=signed_headers(b"wrong", int(time.time()), forged, {"id": "x"})
        )
        assert response.status_code == 401 and flaky.rejected_signatures == 1 and len(flaky.accepted) == 3

        # The dead endpoint gives up after max_attempts: each event dead-lettered with the reason.
        dead.hold.set()  # held requests now get 500; its last attempt fails
        dead_letters = read_topic(
            kafka_settings, DLQ, 2, timeout_s=60, predicate=lambda m: m.key() in (fire_1.encode(), fire_2.encode())
        )
        letters = [SERDE.deserialize(DLQ, "DeadLetter", m.value()) for m in dead_letters]
        assert {letter["service"] for letter in letters} == {"dispatcher"}
        assert all("after 2 attempt(s)" in x["error_message"] and "HTTP 500" in x["error_message"] for x in letters)
        # The original alert bytes travel in the letter (the DLQ has 3 partitions: no order between the two).
        assert {SERDE.deserialize(destination_topic("fire"), "Alert", x["value"])["alert_id"] for x in letters} == {
            fire_1,
            fire_2,
        }

        # ... and delivery resumes once it answers again.
        dead.hold, dead.fail_first = None, 0
        fire_3 = f"{unique}-fire-3"
        publish(kafka_settings, "fire", alert(fire_3))
        wait_for(lambda: dead.accepted_ids() == [f"{fire_3}:new:0"], 30, "the fire endpoint's next event")
        assert service.alive

        # Metrics per destination and endpoint.
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'cctv_dispatcher_sent_total{destination="police",endpoint="hq"} 3.0' in metrics
        assert 'cctv_dispatcher_retries_total{destination="police",endpoint="hq"} 3.0' in metrics
        assert 'cctv_dispatcher_failed_total{destination="fire",endpoint="station",reason="exhausted"} 2.0' in metrics
        assert 'cctv_dispatcher_sent_total{destination="disaster-management",endpoint="ndms"} 1.0' in metrics
        assert 'cctv_dispatcher_delivery_seconds_count{destination="police",endpoint="hq"} 3.0' in metrics
    finally:
        service.stop()
        for receiver in (flaky, dead, healthy):
            receiver.stop()
    assert "not delivered after 2 attempt(s)" in log_file.read_text()
    assert SECRET.decode() not in log_file.read_text()


def test_snapshots_leave_masked_unless_the_destination_may_have_them_unmasked_and_each_release_is_audited(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    group = f"dispatcher-snap-{unique}"
    position_group_at_end(kafka_settings, group)
    still = fetch_stills()["zidane.jpg"].read_bytes()
    faces = json.loads((Path(__file__).parent / "data" / "masking" / "faces.json").read_text())["images"]["zidane.jpg"]
    police, fire = Receiver(SECRET).start(), Receiver(SECRET).start()
    routes = tmp_path / "routes.yaml"
    secret = {"env": "CCTV_TEST_HOOK_SECRET"}
    routes.write_text(
        yaml.safe_dump(
            {
                "routes": [],
                "endpoints": {
                    "police": {"webhooks": [{"name": "hq", "url": police.url, "secret": secret}]},
                    "fire": {"unmasked": True, "webhooks": [{"name": "station", "url": fire.url, "secret": secret}]},
                },
            }
        )
    )
    env = service_env(kafka_settings.bootstrap_servers, group=group) | {
        "CCTV_ROUTES_FILE": str(routes),
        "CCTV_TEST_HOOK_SECRET": SECRET.decode(),
    }
    alert_id = f"{unique}-snap"
    watcher = TopicWatcher(kafka_settings, AUDIT, "AuditRecord", SERDE, keep=lambda r: r["alert_id"] == alert_id)
    service = ServiceProcess("dispatcher", env, tmp_path / "dispatcher.log", module="services.dispatcher.main").start()
    try:
        record = alert(alert_id) | {"snapshot_jpeg": still}
        publish(kafka_settings, "police", record)
        publish(kafka_settings, "fire", record)
        wait_for(lambda: police.accepted and fire.accepted, 60, "both snapshots delivered")
        ledger = wait_for(lambda: len(watcher.snapshot()) >= 2 and watcher.snapshot(), 30, "two release records")
    finally:
        service.stop()
        watcher.close()
        police.stop()
        fire.stop()
    masked_snapshot = police.accepted[0]["data"]["snapshot"]
    assert masked_snapshot["masked"] is True
    original = np.asarray(Image.open(io.BytesIO(still)).convert("RGB"))
    masked = np.asarray(Image.open(io.BytesIO(base64.b64decode(masked_snapshot["jpeg_base64"]))).convert("RGB"))
    for x1, y1, x2, y2 in faces:
        inner = [x1 + (x2 - x1) // 4, y1 + (y2 - y1) // 4, x2 - (x2 - x1) // 4, y2 - (y2 - y1) // 4]
        assert shared_detail(original, masked, inner) < 0.3
    unmasked_snapshot = fire.accepted[0]["data"]["snapshot"]
    assert unmasked_snapshot["masked"] is False and base64.b64decode(unmasked_snapshot["jpeg_base64"]) == still
    by_agency = {r["actor"]: r for r in ledger}
    assert (
        by_agency["police"]["what"] == "webhook.snapshot"
        and "masked=true; faces_masked=2" in by_agency["police"]["detail"]
    )
    assert by_agency["fire"]["what"] == "webhook.snapshot.unmasked" and by_agency["fire"]["camera_id"] == "cam-1"
    assert {r["outcome"] for r in ledger} == {"ALLOWED"} and len(ledger) == 2


def test_an_event_still_being_retried_when_the_dispatcher_stops_is_delivered_after_restart_exactly_once(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    group = f"dispatcher-restart-{unique}"
    position_group_at_end(kafka_settings, group)
    receiver = Receiver(SECRET, fail_first=10**6).start()  # down until the test says otherwise
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        yaml.safe_dump(
            {
                "routes": [],
                "endpoints": {
                    "police": {
                        "webhooks": [
                            {
                                "name": "hq",
                                "url": receiver.url,
                                "secret": {"env": "CCTV_TEST_HOOK_SECRET"},
                                "max_attempts": 100,
                            }
                        ]
                    }
                },
            }
        )
    )
    env = service_env(kafka_settings.bootstrap_servers, group=group) | {
        "CCTV_ROUTES_FILE": str(routes),
        "CCTV_RETRY_INITIAL_S": "0.2",
        "CCTV_RETRY_MAX_S": "0.5",
        "CCTV_COMMIT_INTERVAL_S": "0.2",
        "CCTV_TEST_HOOK_SECRET": SECRET.decode(),
    }
    incident = f"{unique}-restart"
    first = ServiceProcess("dispatcher", env, tmp_path / "first.log", module="services.dispatcher.main").start()
    try:
        publish(kafka_settings, "police", alert(incident, "NEW", 0), alert(incident, "UPDATE", 1))
        wait_for(lambda: len(receiver.attempts) >= 3, 60, "retries while the endpoint is down")
    finally:
        assert first.stop() == 0  # graceful: the undelivered events' offsets are not committed
    receiver.fail_first = 0
    second = ServiceProcess("dispatcher", env, tmp_path / "second.log", module="services.dispatcher.main").start()
    try:
        wait_for(lambda: len(receiver.accepted_ids()) >= 2, 60, "delivery by the restarted dispatcher")
    finally:
        second.stop()
        receiver.stop()
    assert receiver.accepted_ids() == [f"{incident}:new:0", f"{incident}:update:1"]  # none lost, none twice, in order


def test_changed_endpoints_in_the_routing_file_take_effect_without_a_restart_and_a_broken_change_is_refused(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    group = f"dispatcher-reload-{unique}"
    position_group_at_end(kafka_settings, group)
    old, new, fire = Receiver(SECRET).start(), Receiver(SECRET).start(), Receiver(SECRET).start()
    routes = tmp_path / "routes.yaml"
    secret = {"env": "CCTV_TEST_HOOK_SECRET"}

    def write(endpoints: dict) -> None:
        routes.write_text(yaml.safe_dump({"routes": [], "endpoints": endpoints}))

    write({"police": {"webhooks": [{"name": "hq", "url": old.url, "secret": secret}]}})
    env = service_env(kafka_settings.bootstrap_servers, group=group) | {
        "CCTV_ROUTES_FILE": str(routes),
        "CCTV_TEST_HOOK_SECRET": SECRET.decode(),
    }
    log_file = tmp_path / "dispatcher.log"
    service = ServiceProcess("dispatcher", env, log_file, module="services.dispatcher.main").start()
    try:
        publish(kafka_settings, "police", alert(f"{unique}-a"))
        wait_for(lambda: old.accepted_ids() == [f"{unique}-a:new:0"], 60, "delivery to the first endpoint")
        # A change whose secret cannot be read is refused; the current endpoints keep working.
        write({"police": {"webhooks": [{"name": "hq", "url": new.url, "secret": {"env": "CCTV_TEST_UNSET_SECRET"}}]}})
        wait_for(lambda: "CCTV_TEST_UNSET_SECRET" in log_file.read_text(), 30, "the refused change to be logged")
        write(
            {
                "police": {"webhooks": [{"name": "hq", "url": new.url, "secret": secret}]},
                "fire": {"webhooks": [{"name": "station", "url": fire.url, "secret": secret}]},
            }
        )
        wait_for(lambda: "endpoints changed" in log_file.read_text(), 30, "the new endpoints to be taken")
        publish(kafka_settings, "police", alert(f"{unique}-b"))
        publish(kafka_settings, "fire", alert(f"{unique}-c"))
        wait_for(lambda: new.accepted_ids() and fire.accepted_ids(), 60, "delivery to the new endpoints")
        assert service.alive
    finally:
        service.stop()
        for receiver in (old, new, fire):
            receiver.stop()
    assert old.accepted_ids() == [f"{unique}-a:new:0"]
    assert new.accepted_ids() == [f"{unique}-b:new:0"] and fire.accepted_ids() == [f"{unique}-c:new:0"]


def test_the_verifier_printed_in_the_consumers_guide_accepts_real_signatures_and_rejects_forgeries() -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "consumers.md").read_text()
    (block,) = [b.split("\n", 1)[1] for b in guide.split("```")[1::2] if b.startswith("python\nimport hashlib")]
    namespace: dict = {}
    exec(compile(block, "docs/consumers.md", "exec"), namespace)  # noqa: S102 (the guide's own code, run as an agency copies it)
    documented = namespace["verify"]
    body = encode(cloud_event(alert("doc-1"), "police"))
    now = int(time.time())
    headers = signed_headers(SECRET, now, body, {"id": "doc-1:new:0"})
    assert documented(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body)
    assert not documented(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body + b" ")
    assert not documented(b"guess", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body)
    assert not documented(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body, now=now + 301)
