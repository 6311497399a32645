"""A Seoul-wide inventory (110,000 cameras, unreachable on loopback) spread over ingest replicas with a
camera limit (issue 20, item 7): each replica takes only its limit, the rest wait and are counted, the
replicas settle quickly and stay responsive. Reports cameras per replica, CPU and time to settle."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx

from cctv.devstack.services import ServiceProcess
from cctv.inventory import publish
from cctv.inventory_list import latest_records
from libs.cameras import CameraEntry
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import pipeline_topics
from tests.kafka_helpers import refusing_port, wait_for

CITY_CAMERAS = int(os.environ.get("CCTV_TEST_CITY_CAMERAS", "110000"))
REPLICAS, LIMIT = 3, 400
TICKS = os.sysconf("SC_CLK_TCK")


def _metrics(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(cctv_ingest_\w+) ([0-9.e+]+)$", text, re.MULTILINE)}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def test_city_inventory_spreads_over_limited_replicas(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    serde = AvroSerde(shipped_catalog())
    ids = [f"city-{unique}-{i:06d}" for i in range(CITY_CAMERAS)]
    with refusing_port() as port:
        published = time.monotonic()
        publish(
            kafka_settings,
            serde,
            [CameraEntry(camera_id=camera, stream_url=f"rtsp://127.0.0.1:{port}/{camera}") for camera in ids],
        )
        publish_s = time.monotonic() - published
        total = len(latest_records(kafka_settings))  # the shared test inventory may hold other tests' cameras
        replicas = [
            ServiceProcess(
                "ingest",
                {
                    "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
                    "CCTV_HTTP__PORT": "0",
                    "CCTV_GROUP_ID": f"cctv-ingest-city-{unique}",
                    "CCTV_LOG__FORMAT": "text",
                    "CCTV_INSTANCE_ID": f"city-{n}",
                    "CCTV_MAX_CAMERAS": str(LIMIT),
                },
                tmp_path / f"ingest-{n}.log",
            ).start()
            for n in range(REPLICAS)
        ]
        started = time.monotonic()
        try:
            ports = [
                int(
                    wait_for(
                        lambda r=r: re.search(r"metrics and probes on port (\d+)", r.log_text()), 60, "metrics port"
                    ).group(1)
                )
                for r in replicas
            ]

            def settled() -> list[dict[str, float]] | None:
                seen = [_metrics(p) for p in ports]
                owned = [m.get("cctv_ingest_cameras_owned", 0) for m in seen]
                waiting = sum(m.get("cctv_ingest_cameras_waiting", 0) for m in seen)
                return seen if owned == [LIMIT] * REPLICAS and waiting == total - REPLICAS * LIMIT else None

            final = wait_for(settled, 300, f"{REPLICAS} replicas at their limit, the rest waiting")
            settle_s = time.monotonic() - started
            cpu_before = [_cpu_s(r.pid) for r in replicas if r.pid]
            mark = time.monotonic()
            # Settled replicas stay bounded: owned cameras do not grow, the connect rate limit holds.
            wait_for(lambda: time.monotonic() - mark >= 10, 20, "ten seconds of steady state", interval_s=1)
            cpu_rate = [
                (_cpu_s(r.pid) - before) / (time.monotonic() - mark)
                for r, before in zip(replicas, cpu_before, strict=True)
                if r.pid
            ]
            steady = [_metrics(p) for p in ports]
            assert [m["cctv_ingest_cameras_owned"] for m in steady] == [LIMIT] * REPLICAS
            assert all(r.alive for r in replicas)
        finally:
            codes = [r.stop() for r in replicas]
            publish(kafka_settings, serde, [], ids)
    waiting = [int(m["cctv_ingest_cameras_waiting"]) for m in final]
    print(
        f"\n{CITY_CAMERAS} cameras published in {publish_s:.1f} s; {REPLICAS} replicas settled in {settle_s:.1f} s "
        f"at {LIMIT} cameras each, waiting per replica {waiting}; steady CPU per replica "
        + ", ".join(f"{c:.2f}" for c in cpu_rate)
        + " cores (all cameras refused, reconnecting)"
    )
    assert codes == [0] * REPLICAS
    assert sum(waiting) == total - REPLICAS * LIMIT
