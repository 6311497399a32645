"""End to end: capture → alert latency with all four services as separate processes on file cameras of the
sample footage with an intrusion zone (samples/cameras.yaml's `road`), at 1, 8 and 32 cameras.

Latency of an alert = its produced_at (or our receive time) minus its detected_at, which is the capture
time (wall clock at ingest's demux, µs) of the frame that triggered it. Incident updates are made to come
every second (CCTV_INCIDENTS__UPDATE_INTERVAL_S=1) so an ongoing intrusion yields a latency sample per second.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.common import SAMPLE_H264, Result, percentile, pid_cpu_s

ROAD = [[0.30, 0.30], [0.90, 0.20], [0.99, 0.42], [0.55, 0.64], [0.30, 0.52]]
SERVICES = ("ingest", "frame-sampler", "detector", "alert-router")
GROUPS = {
    "frame-sampler": ("cctv-frame-sampler", "cctv.video.packets.v1"),
    "detector": ("cctv-detector", "cctv.frames.v1"),
    "alert-router": ("cctv-alert-router", "cctv.detections.v1"),
}


def camera_entries(count: int) -> list[Any]:
    from libs.cameras import CameraEntry, Sampling

    return [
        CameraEntry(
            camera_id=f"bench-e2e-{index:03d}",
            name=f"bench camera {index}",
            site_id="bench",
            stream_url=f"file://{SAMPLE_H264}",
            loop=True,
            realtime=True,
            sampling=Sampling(mode="fps", fps=2, heartbeat_s=10),
            zones=[{"name": "road", "polygon": ROAD, "rules": [{"type": "intrusion"}]}],
        )
        for index in range(count)
    ]


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of `topic` the group has not committed yet (all partitions)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        consumer.close()


def wait_for_groups(bootstrap: str, groups: list[str], timeout_s: float, status: Callable[[str], None]) -> None:
    """Until every consumer group is stable (members joined, partitions assigned)."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = {}
        for group, future in admin.describe_consumer_groups(groups, request_timeout=5).items():
            try:
                states[group] = future.result().state
            except Exception:  # noqa: BLE001 — a group that does not exist yet
                states[group] = None
        if all(state == ConsumerGroupState.STABLE for state in states.values()):
            return
        status("starting services: " + ", ".join(f"{g}={getattr(s, 'name', s)}" for g, s in states.items()))
        time.sleep(1)
    raise TimeoutError(f"consumer groups {groups} not stable within {timeout_s:.0f} s")


def run_pipeline(
    bootstrap: str, cameras: int, duration_s: float, first_alert_timeout_s: float, status: Callable[[str], None]
) -> dict[str, Any]:
    from cctv.devstack.services import ServiceProcess
    from cctv.inventory import publish
    from libs.kafka import create_topics
    from libs.serde import make_serde
    from libs.settings import KafkaSettings, RegistrySettings
    from libs.topics import ALERTS, pipeline_topics

    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    serde = make_serde(RegistrySettings(url=None))
    create_topics(kafka, pipeline_topics())
    publish(kafka, serde, camera_entries(cameras))
    workdir = Path(tempfile.mkdtemp(prefix="cctv-bench-e2e-"))
    env = {
        "CCTV_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "CCTV_HTTP__PORT": "0",
        "CCTV_LOG__LEVEL": "WARNING",
        "CCTV_INCIDENTS__UPDATE_INTERVAL_S": "1",
        "CCTV_DATA_DIR": str(workdir / "alert-router"),
    }
    env.pop("CCTV_REGISTRY__URL", None)
    # Consumers first, ingest last: the latency measured is the pipeline's, not its start-up backlog.
    processes = [
        ServiceProcess(name, env | {"CCTV_INSTANCE_ID": f"bench-{name}"}, workdir / f"{name}.log").start()
        for name in SERVICES
        if name != "ingest"
    ]
    wait_for_groups(bootstrap, [group for group, _topic in GROUPS.values()], 120, status)
    ingest_started_us = time.time_ns() // 1000
    processes.insert(
        0, ServiceProcess("ingest", env | {"CCTV_INSTANCE_ID": "bench-ingest"}, workdir / "ingest.log").start()
    )
    consumer = Consumer(
        kafka.client_config()
        | {
            "group.id": f"bench-e2e-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([ALERTS])
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    window_start: float | None = None
    cpu_start: dict[str, float] = {}
    try:
        while True:
            now = time.monotonic()
            if window_start is None and now - started > first_alert_timeout_s:
                break
            if window_start is not None and now - window_start > duration_s:
                break
            dead = [p.name for p in processes if not p.alive]
            if dead:
                raise RuntimeError(
                    f"service(s) {dead} died; logs in {workdir}:\n"
                    + "\n".join(p.log_text()[-1500:] for p in processes if p.name in dead)
                )
            message = consumer.poll(0.5)
            elapsed = now - (window_start or started)
            status(
                f"{cameras} cameras: {'waiting for the first alert' if window_start is None else 'measuring'} "
                f"{elapsed:.0f} s, {len(samples)} alerts"
            )
            if message is None or message.error():
                continue
            received_us = time.time_ns() // 1000
            alert = serde.deserialize(ALERTS, "Alert", message.value())
            if window_start is None:
                window_start = time.monotonic()
                cpu_start = {p.name: pid_cpu_s(p.process.pid) for p in processes if p.process}
            if alert["kind"] == "END" or alert["produced_at"] < ingest_started_us:
                continue
            samples.append(
                {
                    "kind": alert["kind"],
                    "camera": alert["camera_id"],
                    "at": time.monotonic() - window_start,
                    "produced_ms": (alert["produced_at"] - alert["detected_at"]) / 1000,
                    "received_ms": (received_us - alert["detected_at"]) / 1000,
                }
            )
        window = time.monotonic() - window_start if window_start else 0.0
        cpu = (
            {
                p.name: round((pid_cpu_s(p.process.pid) - cpu_start.get(p.name, 0.0)) / max(window, 1e-9), 3)
                for p in processes
                if p.process
            }
            if window_start
            else {}
        )
        lags = {name: group_lag(bootstrap, group, topic) for name, (group, topic) in GROUPS.items()}
    finally:
        consumer.close()
        for process in processes:
            process.stop(20)
        if samples:
            shutil.rmtree(workdir, ignore_errors=True)
    # Without a single alert the service logs are kept for a look.
    return {
        "samples": samples,
        "window_s": window,
        "cores_per_service": cpu,
        "lag_at_end": lags,
        "logs": None if samples else str(workdir),
    }


def summarise(cameras: int, measured: dict[str, Any]) -> list[Result]:
    samples = measured["samples"]
    produced = [s["produced_ms"] for s in samples]
    received = [s["received_ms"] for s in samples]
    third = measured["window_s"] / 3
    early = [s["produced_ms"] for s in samples if s["at"] <= third]
    late = [s["produced_ms"] for s in samples if s["at"] >= 2 * third]
    params = {
        "cameras": cameras,
        "alerts": len(samples),
        "logs_kept": measured.get("logs"),
        "window_s": round(measured["window_s"], 1),
        "sampling": "fps:2 on 768x576 10 fps H.264 (keyframe every 1 s)",
        "zone": "road (intrusion)",
        "cores_per_service": measured["cores_per_service"],
        "lag_at_end": measured["lag_at_end"],
        "p50_first_third_ms": round(percentile(early, 50), 1) if early else None,
        "p50_last_third_ms": round(percentile(late, 50), 1) if late else None,
        "p50_at_receiver_ms": round(percentile(received, 50), 1) if received else None,
    }
    results = []
    for q in (50, 95, 99):
        value = round(percentile(produced, q), 1) if produced else None
        results.append(Result.plain("e2e", f"capture→alert latency p{q}", "ms", value, **params))
    return results
