"""Kafka goes away under a running ingest: buffering stays bounded (whole GOPs dropped and counted),
the service stays up, and it recovers by itself when the broker returns. Uses a broker of its own."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from cctv.devstack.kafka import KafkaBroker
from cctv.devstack.services import ServiceProcess
from cctv.inventory import publish
from libs.cameras import CameraEntry
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import VIDEO_PACKETS, pipeline_topics
from tests.kafka_helpers import GRACEFUL_STOP_S, TopicWatcher, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-360p15.mp4"
SERDE = AvroSerde(shipped_catalog())
PORT = int(os.environ.get("CCTV_TEST_KAFKA_OUTAGE_PORT", "19292"))


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def readiness(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_broker_outage_drops_whole_gops_and_recovers(tmp_path: Path) -> None:
    broker = KafkaBroker(port=PORT)
    broker.start(timeout_s=120)
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
    ingest = None
    try:
        create_topics(kafka, pipeline_topics())
        cameras = [CameraEntry(camera_id=f"outage-{i}", stream_url=f"file://{SAMPLE}", loop=True) for i in range(4)]
        publish(kafka, SERDE, cameras)
        metrics_port = free_port()
        ingest = ServiceProcess(
            "ingest",
            {
                "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "CCTV_HTTP__PORT": str(metrics_port),
                "CCTV_MAX_BUFFERED_MESSAGES": "1000",
                "CCTV_LOG__FORMAT": "text",
            },
            tmp_path / "ingest.log",
        ).start()
        with TopicWatcher(kafka, VIDEO_PACKETS, "VideoPacket", SERDE) as before:
            wait_for(lambda: len(before.snapshot()) > 100, 60, "packets before the outage")
        assert metric(metrics_port, "cctv_ingest_dropped_packets_total") == 0

        broker.stop()  # the outage: 4 cameras x 15 packets/s fill the 1000-record buffer in ~17 s
        wait_for(lambda: metric(metrics_port, "cctv_ingest_dropped_packets_total") > 100, 90, "dropped packets")
        assert ingest.alive
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5) as response:
            assert response.status == 200  # alive: a restart would not help, the client reconnects by itself
        assert readiness(metrics_port) == 503, "/readyz must fail while no broker is reachable"

        broker.start(timeout_s=120)
        with TopicWatcher(kafka, VIDEO_PACKETS, "VideoPacket", SERDE) as after:
            wait_for(lambda: len({p["camera_id"] for p in after.snapshot()}) == 4, 120, "all cameras flowing again")
            # Each camera resumes at a keyframe: the first packet after a drop gap is a keyframe.
            wait_for(lambda: len(after.snapshot()) > 200, 60, "steady flow after recovery")
            packets = after.snapshot()
        for camera in {p["camera_id"] for p in packets}:
            mine = [p for p in packets if p["camera_id"] == camera]
            for previous, current in zip(mine, mine[1:], strict=False):
                if current["session_id"] == previous["session_id"] and current["sequence"] != previous["sequence"] + 1:
                    assert current["is_keyframe"], f"{camera}: a gap must end at a keyframe (whole GOPs dropped)"
        # Ready again within a few probe intervals (a late "all brokers down" callback of one client may
        # still arrive after the probe saw the broker back; the next probe, 2 s later, corrects it).
        wait_for(lambda: readiness(metrics_port) == 200, 30, "/readyz to pass again after the outage")
    finally:
        if ingest is not None:
            assert ingest.stop(timeout_s=GRACEFUL_STOP_S) == 0, ingest.log_text()[-2000:]
        broker.stop()
