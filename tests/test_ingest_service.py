"""The ingest service against the real broker: cameras shared out by Kafka's group protocol."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from cctv.devstack.services import ServiceProcess
from libs.cameras import CameraEntry
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import CAMERA_STATUS, VIDEO_PACKETS, pipeline_topics
from tests.kafka_helpers import GRACEFUL_STOP_S, TopicWatcher, wait_for

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-360p15.mp4"
SERDE = AvroSerde(shipped_catalog())


def ingest(name: str, kafka: KafkaSettings, group: str, tmp_path: Path) -> ServiceProcess:
    return ServiceProcess(
        "ingest",
        {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "CCTV_HTTP__PORT": "0",
            "CCTV_INSTANCE_ID": name,
            "CCTV_GROUP_ID": group,
            "CCTV_LOG__FORMAT": "text",
            "CCTV_PULL__STATUS_INTERVAL_S": "2",
        },
        tmp_path / f"{name}.log",
    ).start()


@pytest.fixture
def topics(kafka_settings: KafkaSettings) -> None:
    create_topics(kafka_settings, pipeline_topics())


def owners(statuses: list[dict], since_ms: int = 0) -> dict[str, str]:
    """Latest replica reporting each camera as pulling (CONNECTING/ONLINE) after `since_ms`."""
    latest: dict[str, str] = {}
    for status in statuses:
        if status["timestamp"] >= since_ms and status["state"] in ("CONNECTING", "ONLINE"):
            latest[status["camera_id"]] = status["ingest_instance"]
    return latest


def test_replicas_split_cameras_and_survivor_takes_over(
    kafka_settings: KafkaSettings, topics: None, unique: str, tmp_path: Path, publish_cameras
) -> None:
    cameras = [
        CameraEntry(camera_id=f"split-{unique}-{i}", stream_url=f"file://{SAMPLE}", loop=True, realtime=True)
        for i in range(12)
    ]
    ids = {c.camera_id for c in cameras}
    group = f"cctv-ingest-{unique}"
    status_watch = TopicWatcher(kafka_settings, CAMERA_STATUS, "CameraStatus", SERDE, lambda v: v["camera_id"] in ids)
    packet_watch = TopicWatcher(kafka_settings, VIDEO_PACKETS, "VideoPacket", SERDE, lambda v: v["camera_id"] in ids)
    replica_a = ingest(f"a-{unique}", kafka_settings, group, tmp_path)
    replica_b = None
    try:
        publish_cameras(cameras)
        wait_for(lambda: {p["camera_id"] for p in packet_watch.snapshot()} == ids, 60, "packets from all 12 cameras")

        # Records of one camera arrive in order; keyframes carry codec and extradata.
        first = next(iter(ids))
        mine = [p for p in packet_watch.snapshot() if p["camera_id"] == first]
        assert [p["sequence"] for p in mine] == list(range(mine[0]["sequence"], mine[0]["sequence"] + len(mine)))
        assert all(p["extradata"] and p["codec"] == "h264" for p in mine if p["is_keyframe"])

        replica_b = ingest(f"b-{unique}", kafka_settings, group, tmp_path)
        split_at = int(time.time() * 1000)
        wait_for(
            lambda: (
                set(Counter(owners(status_watch.snapshot(), split_at).values()))
                == {replica_a_name(unique), replica_b_name(unique)}
                and len(owners(status_watch.snapshot())) == 12
            ),
            60,
            "both replicas to own cameras",
        )
        b_cameras = {c for c, who in owners(status_watch.snapshot()).items() if who == replica_b_name(unique)}
        assert 0 < len(b_cameras) < 12

        replica_b.kill()
        killed_at = int(time.time() * 1000)
        wait_for(
            lambda: (
                set(owners(status_watch.snapshot(), killed_at)) >= b_cameras
                and all(owners(status_watch.snapshot(), killed_at)[c] == replica_a_name(unique) for c in b_cameras)
            ),
            45,
            "the survivor to take over the killed replica's cameras",
        )
        taken_over = min(
            s["timestamp"]
            for s in status_watch.snapshot()
            if s["timestamp"] >= killed_at and s["camera_id"] in b_cameras
        )
        print(f"\ncameras moved {taken_over - killed_at} ms after the kill (session timeout 10 s)")
        wait_for(
            lambda: {p["camera_id"] for p in packet_watch.snapshot()[-400:]} >= b_cameras,
            30,
            "packets again from the moved cameras",
        )
    finally:
        for replica in (replica_a, replica_b):
            if replica is not None:
                replica.stop(timeout_s=GRACEFUL_STOP_S)
        status_watch.close()
        packet_watch.close()
    assert replica_a.process.returncode == 0, replica_a.log_text()[-3000:]


def replica_a_name(unique: str) -> str:
    return f"a-{unique}"


def replica_b_name(unique: str) -> str:
    return f"b-{unique}"
