"""The clip writer against the real stack: a real Kafka broker, a real S3 server (SeaweedFS, built from
the Go module proxy by scripts/install-seaweedfs.sh) and the real sample clip demuxed by the ingest core."""

from __future__ import annotations

import base64
import itertools
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from cctv.devstack.s3 import ObjectStore
from cctv.devstack.services import ServiceProcess
from libs.evidence_audit import AuditLog
from libs.evidence_store import EvidenceStore, S3Settings, StorageUnavailable
from libs.kafka import create_topics, high_watermark, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import ALERTS, AUDIT, VIDEO_PACKETS, pipeline_topics
from services.clip_writer.core import ClipPolicy, Incident, Packet
from services.clip_writer.evidence import Actor, EvidenceDesk
from services.clip_writer.jobs import ClipJob
from services.clip_writer.writer import ClipBuilder
from tests.clip_helpers import GOP_US, probe_mp4, sample_packets
from tests.kafka_helpers import TopicWatcher, alert_record, wait_for
from tests.pipeline_helpers import service_env

REPO = Path(__file__).resolve().parents[1]
SERDE = AvroSerde(shipped_catalog())
S = 1_000_000
# Not 18333: SeaweedFS serves gRPC on port + 10000, so the dev stack (`make run`, S3 on 8333) holds 18333-18336.
S3_PORT = int(os.environ.get("CCTV_TEST_S3_PORT", "17333"))
S3_OUTAGE_PORT = int(os.environ.get("CCTV_TEST_S3_OUTAGE_PORT", str(S3_PORT + 100)))
SIGNING_KEY = Ed25519PrivateKey.generate()
SEED_B64 = base64.b64encode(
    SIGNING_KEY.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
).decode()


# Session-wide (modules that import it share one server): a restart per module costs ~10 s each.
@pytest.fixture(scope="session")
def object_store() -> Iterator[ObjectStore]:
    store = ObjectStore(port=S3_PORT)
    outcome = store.start(timeout_s=90)
    yield store
    if outcome == "started" and not os.environ.get("CCTV_TEST_KEEP_KAFKA"):
        store.stop()


def s3_settings(store: ObjectStore, bucket: str) -> S3Settings:
    return S3Settings(
        endpoint_url=store.endpoint,
        bucket=bucket,
        access_key_id=store.access_key,
        secret_access_key=store.secret_key,
        timeout_s=3,
    )


def writer_env(kafka: KafkaSettings, store: ObjectStore, bucket: str, group: str, **extra: str) -> dict[str, str]:
    return (
        service_env(kafka.bootstrap_servers, group=group)
        | {
            "CCTV_S3__ENDPOINT_URL": store.endpoint,
            "CCTV_S3__BUCKET": bucket,
            "CCTV_S3__ACCESS_KEY_ID": store.access_key,
            "CCTV_S3__SECRET_ACCESS_KEY": store.secret_key,
            "CCTV_EVIDENCE__SIGNING_KEY": SEED_B64,
            "CCTV_CLIPS__SETTLE_S": "1",
            "CCTV_MAX_WAIT_S": "5",
            # Masked copies cost CPU; tests/test_evidence_release.py covers them.
            "CCTV_MASKED_COPIES__ENABLED": "false",
        }
        | extra
    )


def start_writer(name: str, env: dict[str, str], tmp_path: Path) -> ServiceProcess:
    return ServiceProcess("clip-writer", env, tmp_path / f"{name}.log", module="services.clip_writer.main").start()


def position_group_at_end(kafka: KafkaSettings, group: str) -> None:
    """A new writer group starts at the alerts' current end, not at other tests' old incidents."""
    consumer = Consumer(kafka.client_config() | {"group.id": group, "enable.auto.commit": False})
    partitions = consumer.list_topics(ALERTS, timeout=10).topics[ALERTS].partitions
    consumer.commit(
        offsets=[TopicPartition(ALERTS, p, high_watermark(consumer, ALERTS, p)) for p in partitions], asynchronous=False
    )
    consumer.close()


def publish_packets(kafka: KafkaSettings, camera: str, start_us: int) -> list:
    """The sample as ingest publishes it, record timestamps = capture times (as when produced live)."""
    packets = sample_packets(camera, start_us)
    producer = make_producer(kafka, "test-packets")
    for packet in packets:
        producer.produce(
            VIDEO_PACKETS,
            key=camera,
            timestamp=packet.capture_time // 1000,
            value=SERDE.serialize(VIDEO_PACKETS, "VideoPacket", packet.as_record()),
        )
    assert producer.flush(60) == 0
    return packets


def alert(alert_id: str, camera: str, kind: str, started_us: int, ended_us: int | None, sequence: int = 0) -> dict:
    return alert_record(
        alert_id,
        camera,
        kind,
        sequence,
        started_us=started_us,
        detected_us=ended_us or started_us,
        ended_us=ended_us,
        evidence={"clip_id": alert_id, "uri": f"cctv-evidence://clips/{alert_id}"},
    )


def publish_alerts(kafka: KafkaSettings, *records: dict) -> None:
    producer = make_producer(kafka, "test-alerts")
    for record in records:
        producer.produce(ALERTS, key=record["alert_id"], value=SERDE.serialize(ALERTS, "Alert", record))
    assert producer.flush(30) == 0


def manifest_when_reachable(store: EvidenceStore, alert_id: str) -> dict | None:
    """None while the store is still coming back (its volume server re-registers after a restart)."""
    try:
        return store.manifest(alert_id)
    except StorageUnavailable:
        return None


def desk_for(kafka: KafkaSettings, store: ObjectStore, bucket: str) -> EvidenceDesk:
    return EvidenceDesk(
        EvidenceStore(s3_settings(store, bucket)),
        AuditLog(make_producer(kafka, "test-audit"), SERDE),
        SIGNING_KEY.public_key(),
    )


def test_the_local_object_store_needs_credentials(object_store: ObjectStore, unique: str) -> None:
    assert object_store.status().startswith("running")
    good = EvidenceStore(s3_settings(object_store, f"auth-{unique}"))
    good.put("evidence/x/probe.txt", b"probe", "text/plain")
    assert good.get("evidence/x/probe.txt") == b"probe"
    wrong = EvidenceStore(
        s3_settings(object_store, f"auth-{unique}").model_copy(update={"secret_access_key": SecretStr("nope")})
    )
    with pytest.raises(StorageUnavailable) as refused:
        wrong.get("evidence/x/probe.txt")
    assert "nope" not in str(refused.value) and object_store.secret_key not in str(refused.value)


def test_packets_are_read_by_time_from_the_partition_the_camera_hashes_to(
    kafka_settings: KafkaSettings,
    unique: str,
) -> None:
    from services.clip_writer.main import KafkaPacketSource

    create_topics(kafka_settings, pipeline_topics())
    camera = f"cam-{unique}"
    base = time.time_ns() // 1000 - 150 * S
    published = publish_packets(kafka_settings, camera, base)
    source = KafkaPacketSource(kafka_settings, SERDE)
    packets = source.read(camera, base + 20 * S, base + 30 * S)
    # From a little before the start (record timestamps lag capture) to a little after the end, in order.
    assert packets[0].capture_time_us <= base + 20 * S and packets[-1].capture_time_us >= base + 30 * S
    assert packets[-1].capture_time_us <= base + 36 * S
    assert [p.offset for p in packets] == sorted(p.offset for p in packets)
    by_capture = {p.capture_time: p.data for p in published}
    assert all(by_capture[p.capture_time_us] == p.data for p in packets)
    assert source.read(f"never-{unique}", base, base + 10 * S) == []


def test_incident_on_the_sample_clip_gives_a_playable_verified_clip_and_an_audited_download(
    kafka_settings: KafkaSettings,
    object_store: ObjectStore,
    unique: str,
    tmp_path: Path,
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    camera, alert_id, bucket, group = f"cam-{unique}", f"alert-{unique}", f"clips-{unique}", f"cw-{unique}"
    base = time.time_ns() // 1000 - 120 * S
    publish_packets(kafka_settings, camera, base)
    position_group_at_end(kafka_settings, group)
    env = writer_env(kafka_settings, object_store, bucket, group, CCTV_MASKED_COPIES__ENABLED="true")
    writer = start_writer("writer", env, tmp_path)
    audit = TopicWatcher(kafka_settings, AUDIT, "AuditRecord", SERDE, lambda v: v["alert_id"] == alert_id)
    try:
        started, ended = base + 30 * S + 250_000, base + 41 * S + 500_000
        publish_alerts(
            kafka_settings,
            alert(alert_id, camera, "NEW", started, None),
            alert(alert_id, camera, "END", started, ended, 1),
        )
        desk = desk_for(kafka_settings, object_store, bucket)
        manifest = wait_for(lambda: desk.store.manifest(alert_id), 120, f"the manifest of {alert_id}")
        # The writer's worker makes the masked copy for release next to it (tests/test_evidence_release.py
        # checks what it looks like).
        release = wait_for(lambda: desk.masked_manifest(alert_id), 300, f"the masked copy of {alert_id}")
    finally:
        writer.stop()
    assert (
        release["created_by"] == "clip-writer" and release["objects"][0]["source_key"] == manifest["objects"][0]["key"]
    )
    assert manifest["camera_id"] == camera and manifest["codec"] == "h264" and len(manifest["objects"]) == 1
    obj = manifest["objects"][0]
    assert (
        obj["first_packet"]["topic"] == VIDEO_PACKETS and obj["last_packet"]["offset"] > obj["first_packet"]["offset"]
    )

    clip = probe_mp4(desk.store.get(obj["key"]))
    assert clip["first_is_keyframe"] and clip["width"] == 768
    wanted_s = (ended - started) / S + 20  # pre-roll + incident + post-roll
    assert wanted_s <= clip["duration_s"] <= wanted_s + 2 * GOP_US / S, clip
    assert manifest["clip"]["start_us"] <= started - 10 * S < manifest["clip"]["start_us"] + GOP_US

    assert desk.verify(alert_id).ok
    # The alert's frame comes back from the clip (cctv.frames.v1 keeps minutes only).
    assert (
        desk.snapshot(alert_id, started + 2 * S, Actor("kim", frozenset({"operator"}), "10.0.0.7"))[:2] == b"\xff\xd8"
    )
    # One byte of the object changes in the bucket: verify names the object and both hashes.
    data = bytearray(desk.store.get(obj["key"]))
    data[len(data) // 2] ^= 0x01
    desk.store.put(obj["key"], bytes(data), "video/mp4")
    result = subprocess.run(
        [sys.executable, "-m", "cctv.cli", "evidence", "verify", alert_id],
        check=False,
        capture_output=True,
        text=True,
        env=os.environ | writer_env(kafka_settings, object_store, bucket, group),
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{obj['key']}: sha256" in result.stdout and "does NOT verify" in result.stdout

    # Download of the original (supervisors, with a reason): audited first, then a short-lived presigned
    # link; the bucket itself stays private.
    links = desk.download_links(
        alert_id, Actor("kim", frozenset({"supervisor"}), "10.0.0.7"), variant="original", reason="case 7"
    )
    with urllib.request.urlopen(links[0]["url"], timeout=30) as response:
        assert response.read() == bytes(data)
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{object_store.endpoint}/{bucket}/{obj['key']}", timeout=30)
    assert anonymous.value.code == 403
    with pytest.raises(PermissionError):
        desk.download_links(alert_id, Actor("guest", frozenset({"viewer"}), "10.0.0.8"))
    records = wait_for(lambda: len(audit.snapshot()) >= 3 and audit.snapshot(), 30, "the download audit records")
    audit.close()
    assert [(r["actor"], r["what"], r["outcome"], r["client_address"]) for r in records] == [
        ("kim", "evidence.download", "ALLOWED", "10.0.0.7"),
        ("kim", "evidence.download", "ALLOWED", "10.0.0.7"),
        ("guest", "evidence.download", "DENIED", "10.0.0.8"),
    ]
    assert "frame at" in records[0]["detail"] and obj["key"] in records[1]["detail"]
    assert all(object_store.secret_key not in str(r) for r in records)


class ListSource:
    """Packets from memory, for tests that exercise storage and retention rather than Kafka reads."""

    topic = VIDEO_PACKETS

    def __init__(self, packets: list[Packet]) -> None:
        self.packets = packets

    def read(self, camera_id: str, start_us: int, end_us: int) -> list[Packet]:
        return [p for p in self.packets if start_us - 5 * S <= p.capture_time_us <= end_us + 5 * S]


def test_retention_deletes_an_expired_clip_but_not_a_held_one(
    kafka_settings: KafkaSettings,
    object_store: ObjectStore,
    unique: str,
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    bucket = f"retention-{unique}"
    base = time.time_ns() // 1000 - 200 * S
    packets = [Packet.from_record(0, i, r.as_record()) for i, r in enumerate(sample_packets("cam-r", base))]
    desk = desk_for(kafka_settings, object_store, bucket)
    policy = ClipPolicy(retention_days=1)
    builder = ClipBuilder(policy, ListSource(packets), desk.store, SIGNING_KEY)
    held, expired = f"held-{unique}", f"expired-{unique}"
    for alert_id in (held, expired):
        incident = Incident(alert_id, "cam-r", "loitering", base + 20 * S, base + 25 * S)
        assert builder.finish(ClipJob(incident, 0, 0, ended=True)) is not None
    audit = TopicWatcher(kafka_settings, AUDIT, "AuditRecord", SERDE, lambda v: v["alert_id"] in (held, expired))
    supervisor = Actor("lee", frozenset({"supervisor"}), "10.0.0.9")
    with pytest.raises(PermissionError):
        desk.hold(held, Actor("kim", frozenset({"operator"})), "case 2026-1130")
    desk.hold(held, supervisor, "case 2026-1130")

    assert desk.sweep(now_us=base) == []  # nothing expired yet
    later = base + 2 * 86_400 * S
    assert desk.sweep(now_us=later) == [expired]
    assert (
        desk.store.manifest(expired) is None
        and list(
            desk.store.client.list_objects_v2(Bucket=bucket, Prefix=desk.store.key(expired, "")).get("Contents", [])
        )
        == []
    )
    assert desk.verify(held).ok

    desk.release(held, supervisor, "case closed")
    assert desk.sweep(now_us=later) == [held]
    records = wait_for(lambda: len(audit.snapshot()) >= 5 and audit.snapshot(), 30, "the audit records")
    audit.close()
    assert [(r["alert_id"], r["what"], r["outcome"]) for r in records] == [
        (held, "evidence.hold", "DENIED"),
        (held, "evidence.hold", "ALLOWED"),
        (expired, "evidence.delete", "ALLOWED"),
        (held, "evidence.release", "ALLOWED"),
        (held, "evidence.delete", "ALLOWED"),
    ]
    assert records[1]["detail"] == "case 2026-1130" and records[1]["actor"] == "lee"


def test_a_writer_killed_mid_clip_is_replaced_and_the_finished_clip_is_complete(
    kafka_settings: KafkaSettings,
    object_store: ObjectStore,
    unique: str,
    tmp_path: Path,
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    camera, alert_id, bucket, group = f"cam-{unique}", f"long-{unique}", f"resume-{unique}", f"cw-{unique}"
    base = time.time_ns() // 1000 - 100 * S
    publish_packets(kafka_settings, camera, base)
    position_group_at_end(kafka_settings, group)
    env = writer_env(kafka_settings, object_store, bucket, group, CCTV_CLIPS__SEGMENT_S="10")
    store = EvidenceStore(s3_settings(object_store, bucket))
    # The incident is still going on: the writer stores the segments that are already complete.
    started = base + 20 * S
    publish_alerts(kafka_settings, alert(alert_id, camera, "NEW", started, None))
    first = start_writer("first", env, tmp_path)
    try:
        wait_for(
            lambda: store.stored_sha256(store.key(alert_id, "segment-002.mp4")), 120, "segments of the open incident"
        )
        assert store.manifest(alert_id) is None
    finally:
        first.kill()
    early = {key: store.stored_sha256(key) for key in (store.key(alert_id, f"segment-{i:03d}.mp4") for i in range(3))}

    publish_alerts(kafka_settings, alert(alert_id, camera, "END", started, base + 60 * S, 1))
    second = start_writer("second", env, tmp_path)
    try:
        manifest = wait_for(lambda: store.manifest(alert_id), 120, "the finished clip")
    finally:
        second.stop()
    objects = manifest["objects"]
    assert len(objects) == 6  # 10 s .. 70 s in 10 s segments
    for before, after in itertools.pairwise(objects):
        assert after["first_packet"]["offset"] == before["last_packet"]["offset"] + 1  # nothing lost, nothing twice
    assert objects[0]["start_us"] <= started - 10 * S < objects[0]["start_us"] + GOP_US
    assert objects[-1]["end_us"] >= base + 70 * S
    for item in objects[:3]:
        assert early[item["key"]] == item["sha256"]
        assert f"stored {item['key']}" not in second.log_text()  # already there: not written again
    assert sum(probe_mp4(store.get(o["key"]))["frames"] for o in objects) == sum(o["packets"] for o in objects)
    desk = EvidenceDesk(store, None, SIGNING_KEY.public_key())  # type: ignore[arg-type]
    assert desk.verify(alert_id).ok


def test_storage_down_queues_clips_bounded_and_writes_them_when_it_returns(
    kafka_settings: KafkaSettings,
    unique: str,
    tmp_path: Path,
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    storage = ObjectStore(port=S3_OUTAGE_PORT)
    storage.start(timeout_s=90)
    camera, bucket, group = f"cam-{unique}", f"outage-{unique}", f"cw-{unique}"
    base = time.time_ns() // 1000 - 100 * S
    publish_packets(kafka_settings, camera, base)
    position_group_at_end(kafka_settings, group)
    env = writer_env(
        kafka_settings,
        storage,
        bucket,
        group,
        CCTV_MAX_QUEUED_CLIPS="2",
        CCTV_RETRY_INITIAL_S="0.5",
        CCTV_RETRY_MAX_S="2",
    )
    writer = start_writer("writer", env, tmp_path)
    alert_ids = [f"down-{i}-{unique}" for i in range(3)]
    try:
        wait_for(lambda: "assigned" in writer.log_text(), 60, "the writer to join its group")
        storage.stop()
        publish_alerts(
            kafka_settings,
            *[
                alert(a, camera, "END", base + (10 + 15 * i) * S, base + (15 + 15 * i) * S)
                for i, a in enumerate(alert_ids)
            ],
        )
        wait_for(lambda: "object storage unavailable" in writer.log_text(), 60, "the storage errors")
        wait_for(lambda: "alert consumption paused" in writer.log_text(), 60, "the queue to fill and pause consumption")
        assert "2 clips queued (storage down?)" in writer.log_text()  # the bound (2), not all 3 incidents
        assert writer.alive
        storage.start(timeout_s=90)
        store = EvidenceStore(s3_settings(storage, bucket))
        wait_for(
            lambda: all(manifest_when_reachable(store, a) for a in alert_ids), 180, "every queued clip to be written"
        )
        wait_for(lambda: "consumption resumed" in writer.log_text(), 30, "consumption to resume")
        desk = EvidenceDesk(store, None, SIGNING_KEY.public_key())  # type: ignore[arg-type]
        for alert_id in alert_ids:
            assert desk.verify(alert_id).ok
    finally:
        writer.stop()
        storage.stop()
