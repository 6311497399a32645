"""An ingest replica given more cameras than it should serve, against the real broker (issue 20, item 7):
SIGTERM stops it promptly even while thousands of cameras come up and fail, and a per-replica camera
limit keeps the rest waiting, visible in its metrics."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx

from cctv.devstack.services import ServiceProcess
from cctv.inventory_list import latest_records
from libs.cameras import CameraEntry
from libs.kafka import create_topics
from libs.settings import KafkaSettings
from libs.topics import pipeline_topics
from tests.kafka_helpers import refusing_port, wait_for

STORM_CAMERAS = int(os.environ.get("CCTV_TEST_STORM_CAMERAS", "6000"))


def _replica(kafka: KafkaSettings, group: str, log_file: Path, **extra: str) -> ServiceProcess:
    return ServiceProcess(
        "ingest",
        {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "CCTV_HTTP__PORT": "0",
            "CCTV_GROUP_ID": group,
            "CCTV_LOG__FORMAT": "text",
            "CCTV_PULL__BACKOFF_INITIAL_S": "0.05",
            "CCTV_PULL__BACKOFF_MAX_S": "0.5",
        }
        | extra,
        log_file,
    ).start()


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_sigterm_stops_a_replica_while_thousands_of_failing_cameras_come_up(
    kafka_settings: KafkaSettings, publish_cameras, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    with refusing_port() as port:
        publish_cameras(
            [
                CameraEntry(camera_id=f"storm-{unique}-{i:05d}", stream_url=f"rtsp://127.0.0.1:{port}/c{i}")
                for i in range(STORM_CAMERAS)
            ]
        )
        replica = _replica(kafka_settings, f"cctv-ingest-storm-{unique}", tmp_path / "ingest.log")
        try:
            wait_for(lambda: replica.log_text().count("pulling camera storm-") >= 100, 180, "cameras coming up")
            assert replica.process is not None
            replica.process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            code = replica.process.wait(timeout=120)
            took = time.monotonic() - sent
        finally:
            replica.stop(timeout_s=5)
    log = replica.log_text()
    after_signal = log.partition("received SIGTERM")[2]
    started_after = after_signal.count("pulling camera storm-")
    started = log.count("pulling camera storm-")
    print(
        f"\n{STORM_CAMERAS} failing cameras: {started} started, {started_after} after SIGTERM; "
        f"stopped {took:.1f} s after SIGTERM"
    )
    assert code == 0, log[-3000:]
    assert started_after <= 50, f"{started_after} cameras were still started after SIGTERM"
    assert took < 30, f"took {took:.1f} s to stop"


def test_camera_limit_keeps_the_rest_waiting_and_visible(
    kafka_settings: KafkaSettings, publish_cameras, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    with refusing_port() as port:
        publish_cameras(
            [
                CameraEntry(camera_id=f"limit-{unique}-{i:04d}", stream_url=f"rtsp://127.0.0.1:{port}/c{i}")
                for i in range(300)
            ]
        )
        total = len(latest_records(kafka_settings))  # the shared test inventory may hold other tests' cameras
        assert total >= 300
        replica = _replica(
            kafka_settings, f"cctv-ingest-limit-{unique}", tmp_path / "ingest.log", CCTV_MAX_CAMERAS="120"
        )
        try:
            wait_for(lambda: replica.log_text().count("pulling camera ") >= 120, 120, "120 cameras pulled")
            metrics_port = int(re.search(r"metrics and probes on port (\d+)", replica.log_text()).group(1))  # type: ignore[union-attr]
            wait_for(
                lambda: _metric(metrics_port, "cctv_ingest_cameras_waiting") == total - 120,
                30,
                f"{total - 120} waiting",
            )
            assert _metric(metrics_port, "cctv_ingest_cameras_owned") == 120
            assert _metric(metrics_port, "cctv_ingest_camera_limit") == 120
            # It stays at its limit: no further camera was started while the others wait.
            assert replica.log_text().count("pulling camera ") == 120
        finally:
            code = replica.stop()
    assert code == 0, replica.log_text()[-3000:]
