"""Console benchmark: memory with the reference district's 3,609 cameras in the inventory, wall API
latency, and capture→pixels latency in real headless Chromium.

    python -m bench.console [--bootstrap 127.0.0.1:29092] [--duration 120] [--quick]

Load: every camera ONLINE with a status record, `active` of them ACTIVE sending frames at 2 fps, the
rest a heartbeat frame every 30 s (as the frame-sampler sends), alerts on a few cameras, and the wall
polled by an HTTP client the way the page polls it. The console runs as its own process; its resident
memory is sampled from /proc. Writes docs/benchmarks/console.json and prints a summary.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    BENCH_KAFKA_PORT,
    RESULTS_DIR,
    SAMPLE_H264,
    bench_broker,
    machine_description,
    now_iso,
)

CAMERAS = 3609
PASSWORD = "bench-operator-password"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sample_jpeg() -> tuple[bytes, int, int]:
    """One real frame of the sample footage, as the frame-sampler would send it (JPEG)."""
    import av

    with av.open(str(SAMPLE_H264)) as container:
        frame = next(container.decode(video=0))
    image = frame.to_image()
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue(), image.width, image.height


def _inventory(count: int) -> list[Any]:
    from libs.cameras import CameraEntry, GeoPoint

    rng = random.Random(7)
    return [
        CameraEntry(
            camera_id=f"bench-con-{index:04d}",
            name=f"district camera {index}",
            site_id=f"site-{index // 3:04d}",
            stream_url=f"rtsp://10.0.{index // 250}.{index % 250}/stream",
            location=GeoPoint(lat=37.55 + rng.random() * 0.05, lon=126.95 + rng.random() * 0.07),
        )
        for index in range(count)
    ]


class Feeder:
    """Produces statuses, activity, frames and alerts like the pipeline would, until stopped."""

    def __init__(self, bootstrap: str, cameras: list[str], active: int) -> None:
        from libs.kafka import make_producer
        from libs.serde import AvroSerde, shipped_catalog
        from libs.settings import KafkaSettings

        self.serde = AvroSerde(shipped_catalog())
        self.producer = make_producer(KafkaSettings(bootstrap_servers=bootstrap), "bench-console")
        self.cameras, self.active = cameras, cameras[:active]
        self.jpeg, self.width, self.height = _sample_jpeg()
        self.frames = 0
        self._stop = threading.Event()
        self._sequence = 0

    def send(self, topic: str, schema: str, key: str, value: dict[str, Any]) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key.encode(), value=self.serde.serialize(topic, schema, value))
                return
            except BufferError:
                self.producer.poll(0.05)

    def states(self) -> None:
        now_ms = int(time.time() * 1000)
        for camera in self.cameras:
            self.send(
                "cctv.camera-status.v1",
                "CameraStatus",
                camera,
                {
                    "camera_id": camera,
                    "session_id": "s",
                    "state": "ONLINE",
                    "reason": None,
                    "fps": 15.0,
                    "bitrate_bps": 2e6,
                    "last_packet_time": now_ms,
                    "reconnect_attempt": 0,
                    "ingest_instance": "bench",
                    "timestamp": now_ms,
                },
            )
            state = "ACTIVE" if camera in self.active else "IDLE"
            self.send(
                "cctv.camera-activity.v1",
                "CameraActivity",
                camera,
                {
                    "camera_id": camera,
                    "state": state,
                    "motion_score": 0.1,
                    "since": now_ms * 1000,
                    "timestamp": now_ms * 1000,
                },
            )
        self.producer.flush(60)

    def frame(self, camera: str) -> None:
        now_us = int(time.time() * 1e6)
        self._sequence += 1
        self.send(
            "cctv.frames.v1",
            "Frame",
            camera,
            {
                "camera_id": camera,
                "session_id": "s",
                "sequence": self._sequence,
                "capture_time": now_us,
                "pts_us": None,
                "source_partition": 0,
                "source_offset": self._sequence,
                "width": self.width,
                "height": self.height,
                "jpeg": self.jpeg,
                "motion_score": 0.1,
                "reason": "MOTION",
                "sampled_at": now_us,
            },
        )
        self.frames += 1

    def alert(self, camera: str) -> None:
        now_us = int(time.time() * 1e6)
        alert_id = str(uuid.uuid4())
        self.send(
            "cctv.alerts.v1",
            "Alert",
            alert_id,
            {
                "alert_id": alert_id,
                "kind": "NEW",
                "sequence": 0,
                "event_type": "intrusion",
                "rule_id": "intrusion",
                "severity": "HIGH",
                "camera_id": camera,
                "camera_name": camera,
                "site_id": "bench",
                "location": None,
                "tags": [],
                "zone_id": "road",
                "zone_name": "road",
                "started_at": now_us,
                "detected_at": now_us,
                "ended_at": None,
                "track_ids": [],
                "objects": [],
                "frame": None,
                "snapshot_jpeg": self.jpeg,
                "description": "bench intrusion",
                "destinations": [],
                "produced_at": now_us,
            },
        )

    def run(self) -> None:
        """Active cameras at 2 fps; every other camera a heartbeat frame every 30 s; an alert every 5 s."""
        idle = [c for c in self.cameras if c not in self.active]
        started, tick, next_alert = time.monotonic(), 0, time.monotonic() + 5
        while not self._stop.is_set():
            for camera in self.active:
                self.frame(camera)
            per_half_second = max(1, len(idle) // 60)
            for camera in idle[(tick * per_half_second) % len(idle) :][:per_half_second]:
                self.frame(camera)
            if time.monotonic() >= next_alert:
                self.alert(random.choice(self.active))
                next_alert += 5
            self.producer.poll(0)
            tick += 1
            self._stop.wait(max(0.0, started + tick * 0.5 - time.monotonic()))
        self.producer.flush(30)

    def stop(self) -> None:
        self._stop.set()


def _wall_client(url: str, token: str, stop: threading.Event, timings: list[float]) -> None:
    """Polls like one open page: the wall every second, each tile's frame when it changed."""
    seen: dict[str, int] = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            wall = client.get("/api/v1/wall").json()
            timings.append((time.perf_counter() - started) * 1000)
            for tile in wall["tiles"]:
                frame = tile.get("frame")
                if frame and seen.get(tile["camera_id"]) != frame["sequence"]:
                    client.get(f"/api/v1/cameras/{tile['camera_id']}/frame.jpg")
                    seen[tile["camera_id"]] = frame["sequence"]
            stop.wait(1.0)


def _browser_latency(url: str, seconds: float) -> list[float]:
    """capture→pixels in headless Chromium (needs Debian chromium + chromium-driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        deadline = time.monotonic() + 30
        while not driver.find_element(By.ID, "login").is_displayed() and time.monotonic() < deadline:
            time.sleep(0.2)
        driver.find_element(By.ID, "username").send_keys("operator")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login-button").click()
        time.sleep(seconds)  # a measuring window, not a race: we read whatever samples it produced
        return list(driver.execute_script("return window.cctvConsole.latency"))
    finally:
        driver.quit()


def run(bootstrap: str, duration_s: float, active: int, browser: bool) -> list[dict[str, Any]]:
    from cctv.inventory import publish
    from libs.kafka import create_topics
    from libs.serde import AvroSerde, shipped_catalog
    from libs.settings import KafkaSettings
    from libs.topics import pipeline_topics
    from services.console.users import hash_password

    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    create_topics(kafka, pipeline_topics())
    entries = _inventory(CAMERAS)
    serde = AvroSerde(shipped_catalog())
    for start in range(0, len(entries), 500):
        publish(kafka, serde, entries[start : start + 500])
    feeder = Feeder(bootstrap, [e.camera_id for e in entries], active)
    feeder.states()
    workdir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    users = workdir / "users.yaml"
    users.write_text(
        json.dumps({"users": {"operator": {"password_hash": hash_password(PASSWORD), "role": "operator"}}})
    )
    port = 18000 + os.getpid() % 1000
    env = os.environ | {
        "CCTV_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "CCTV_USERS_FILE": str(users),
        "CCTV_SESSION_KEY": uuid.uuid4().hex * 2,
        "CCTV_HTTP__PORT": str(port),
        "CCTV_LOG__FORMAT": "text",
    }
    with open(workdir / "console.log", "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "services.console.main"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() - started > 180:
                raise RuntimeError((workdir / "console.log").read_text()[-3000:])
            time.sleep(0.5)
        ready_s = time.monotonic() - started
        token = httpx.post(f"{url}/api/v1/login", json={"username": "operator", "password": PASSWORD}).json()["token"]
        stop, timings = threading.Event(), []
        threads = [
            threading.Thread(target=feeder.run, daemon=True),
            threading.Thread(target=_wall_client, args=(url, token, stop, timings), daemon=True),
        ]
        for thread in threads:
            thread.start()
        samples: list[tuple[float, float]] = []
        cpu_start, t0 = _cpu_s(process.pid), time.monotonic()
        latencies: list[float] = []
        if browser:
            latencies = _browser_latency(url, min(60.0, duration_s / 2))
        while time.monotonic() - t0 < duration_s:
            samples.append((time.monotonic() - t0, _rss_mb(process.pid)))
            time.sleep(2.0)
        cpu = (_cpu_s(process.pid) - cpu_start) / (time.monotonic() - t0)
        wall = httpx.get(f"{url}/api/v1/wall", headers={"Authorization": f"Bearer {token}"}).json()
        cameras = httpx.get(f"{url}/api/v1/cameras", headers={"Authorization": f"Bearer {token}"}).json()["count"]
        feeder.stop()
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        process.terminate()
        process.wait(30)
        publish(kafka, serde, [], [e.camera_id for e in entries])  # leave the inventory as we found it
    half = [rss for t, rss in samples if t >= duration_s / 2]
    first = [rss for t, rss in samples if t < duration_s / 2]
    slope = 0.0
    if len(half) > 2:
        xs = [t for t, _ in samples if t >= duration_s / 2]
        slope = statistics.linear_regression(xs, half).slope * 60
    result = {
        "cameras_in_inventory": cameras,
        "active_cameras": active,
        "duration_s": duration_s,
        "frames_published": feeder.frames,
        "frames_per_s": round(feeder.frames / duration_s, 1),
        "ready_after_s": round(ready_s, 1),
        "tiles": len(wall["tiles"]),
        "idle_collapsed": wall["idle_count"],
        "rss_mb_first_half_max": round(max(first), 1),
        "rss_mb_second_half_max": round(max(half), 1),
        "rss_mb_end": round(samples[-1][1], 1),
        "rss_slope_mb_per_min_second_half": round(slope, 2),
        "console_cores": round(cpu, 2),
        "wall_api_p50_ms": round(statistics.median(timings), 1),
        "wall_api_p95_ms": round(sorted(timings)[int(len(timings) * 0.95)], 1),
        "capture_to_pixels_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "capture_to_pixels_p95_ms": round(sorted(latencies)[int(len(latencies) * 0.95)], 1) if latencies else None,
        "capture_to_pixels_samples": len(latencies),
        "rss_samples": [(round(t, 1), round(r, 1)) for t, r in samples],
    }
    return [result]


def summarise(measured: dict[str, Any]) -> list[Any]:
    """The harness's Result rows (python -m bench --only console)."""
    from bench.common import Result

    params = {k: measured[k] for k in ("cameras_in_inventory", "active_cameras", "frames_per_s", "duration_s")}
    return [
        Result.plain(
            "console", "resident memory, second half (max)", "MB", measured["rss_mb_second_half_max"], **params
        ),
        Result.plain(
            "console", "memory slope, second half", "MB/min", measured["rss_slope_mb_per_min_second_half"], **params
        ),
        Result.plain("console", "CPU", "cores", measured["console_cores"], **params),
        Result.plain("console", "GET /api/v1/wall p50", "ms", measured["wall_api_p50_ms"], **params),
        Result.plain("console", "capture→pixels p50 (Chromium)", "ms", measured["capture_to_pixels_p50_ms"], **params),
        Result.plain("console", "capture→pixels p95 (Chromium)", "ms", measured["capture_to_pixels_p95_ms"], **params),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", help=f"an existing broker; default: a fresh one on port {BENCH_KAFKA_PORT}")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--active", type=int, default=24, help="ACTIVE cameras (tiles) sending 2 fps")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    browser = not args.no_browser and Path("/usr/bin/chromedriver").exists()
    if args.bootstrap:
        results = run(args.bootstrap, args.duration, args.active, browser)
    else:
        with bench_broker() as bootstrap:
            results = run(bootstrap, args.duration, args.active, browser)
    entry = results[0] | {"machine": machine_description(), "date": now_iso()}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "console.json").write_text(json.dumps(entry, indent=2) + "\n")
    print(json.dumps({k: v for k, v in entry.items() if k not in ("rss_samples", "machine")}, indent=2))


if __name__ == "__main__":
    main()
