"""Ingest: N file cameras (substream class, realtime) in one Ingest instance producing to the real broker,
against a bare PyAV demux loop over the same streams, paced the same way, in its own process."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from typing import Any

import av

from bench.common import SAMPLE_SUBSTREAM, CpuMeter, Result

STREAM_FPS = 15.0


def _cpu_by_thread_kind() -> dict[str, float]:
    """CPU seconds of this process's threads so far: librdkafka's own threads (rdk:*, the Kafka client's
    I/O) apart from the Python threads (demux loops, camera threads, the main loop)."""
    import os
    from pathlib import Path

    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        kind = "librdkafka" if name.startswith("rdk:") else "python"  # Python 3.11 leaves its threads unnamed
        totals[kind] = totals.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals


def service_worker(
    bootstrap: str, cameras: int, duration_s: float, warmup_s: float, demux_loops: int = 0
) -> dict[str, Any]:
    """The real Ingest (main.py): its producer settings, GOP gate, on_packet/on_status, CameraPullers."""
    from libs.cameras import CameraEntry
    from libs.health import Health
    from libs.kafka import create_topics
    from libs.lifecycle import Shutdown
    from libs.serde import make_serde
    from libs.service import ServiceRuntime
    from libs.settings import KafkaSettings, RegistrySettings
    from libs.topics import pipeline_topics
    from services.ingest.main import Ingest, IngestSettings

    settings = IngestSettings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap), registry=RegistrySettings(url=None), demux_loops=demux_loops
    )
    create_topics(settings.kafka, pipeline_topics())
    runtime = ServiceRuntime("ingest", settings, Health(60), Shutdown(), make_serde(settings.registry), None)
    ingest = Ingest(runtime)
    for index in range(cameras):
        ingest.start_camera(
            0,
            CameraEntry(
                camera_id=f"bench-sub-{index:04d}", stream_url=f"file://{SAMPLE_SUBSTREAM}", loop=True, realtime=True
            ),
        )

    def packets() -> int:
        return sum(puller.packets for puller in list(ingest.pullers.values()))

    def dropped() -> int:
        return sum(camera.dropped for camera in list(ingest.output.cameras.values()))

    def serve(until: float) -> None:  # what Ingest.run does between inventory records
        while time.monotonic() < until:
            ingest.consumer.poll(0.2)
            ingest.producer.poll(0)

    serve(time.monotonic() + warmup_s)
    first_packets, first_dropped, first_threads = packets(), dropped(), _cpu_by_thread_kind()
    with CpuMeter() as meter:
        serve(time.monotonic() + duration_s)
        sent = packets() - first_packets
    threads = _cpu_by_thread_kind()
    lost = dropped() - first_dropped
    ingest.close()
    per_packet = {
        kind: round((cpu - first_threads.get(kind, 0.0)) / max(1, sent) * 1e6, 1) for kind, cpu in threads.items()
    }
    return {
        "cpu_s": meter.cpu_s,
        "wall_s": meter.wall_s,
        "packets": sent,
        "dropped": lost,
        "us_per_packet_by_thread": per_packet,
    }


def _bare_camera(stop: threading.Event, counter: list[int]) -> None:
    """Open, demux, copy each packet's bytes, pace on pts: the least an ingest must do per camera."""
    offset_s = 0.0
    start: float | None = None
    while not stop.is_set():
        container = av.open(str(SAMPLE_SUBSTREAM))
        video = container.streams.video[0]
        time_base = video.time_base or Fraction(1, 90_000)
        last = 0.0
        for packet in container.demux(video):
            if stop.is_set():
                break
            if packet.size == 0 or packet.pts is None:
                continue
            pts_s = float(packet.pts * time_base) + offset_s
            last = max(last, pts_s)
            start = start if start is not None else time.monotonic() - pts_s
            wait = pts_s - (time.monotonic() - start)
            if wait > 0 and stop.wait(wait):
                break
            _data = bytes(packet)
            counter[0] += 1
        offset_s = last + 1 / STREAM_FPS
        container.close()


def bare_worker(cameras: int, duration_s: float, warmup_s: float) -> dict[str, Any]:
    stop = threading.Event()
    counters = [[0] for _ in range(cameras)]
    threads = [threading.Thread(target=_bare_camera, args=(stop, c), daemon=True) for c in counters]
    for thread in threads:
        thread.start()
    time.sleep(warmup_s)
    first = sum(c[0] for c in counters)
    with CpuMeter() as meter:
        time.sleep(duration_s)
        packets = sum(c[0] for c in counters) - first
    stop.set()
    for thread in threads:
        thread.join(5)
    return {"cpu_s": meter.cpu_s, "wall_s": meter.wall_s, "packets": packets}


class _BareLoopCamera:
    """One looping file camera of bare_loop_worker, holding its next packet until it is due."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.offset_s = 0.0  # looping: timestamps continue
        self.last_s = 0.0
        self.next_packet: Any = None
        self._open()

    def _open(self) -> None:
        self.container = av.open(str(SAMPLE_SUBSTREAM))
        video = self.container.streams.video[0]
        self.time_base = video.time_base or Fraction(1, 90_000)
        self.demux = self.container.demux(video)

    def read_ahead(self) -> float:
        """Demux the next packet; returns when it is due."""
        while True:
            packet = next(self.demux, None)
            if packet is None:
                self.container.close()
                self._open()
                self.offset_s = self.last_s + 1 / STREAM_FPS
            elif packet.size and packet.pts is not None:
                break
        pts_s = float(packet.pts * self.time_base) + self.offset_s
        self.last_s = max(self.last_s, pts_s)
        self.next_packet = packet
        return self.origin + pts_s


def bare_loop_worker(cameras: int, duration_s: float, warmup_s: float) -> dict[str, Any]:
    """The same paced demux with no thread per camera: one loop, a heap of cameras by their next
    packet's time, every camera due within COALESCE_S served per wake-up (the design ingest now uses)."""
    import heapq

    from services.ingest.loops import COALESCE_S

    start = time.monotonic()
    state = [_BareLoopCamera(start) for _ in range(cameras)]
    heap = [(camera.read_ahead(), index) for index, camera in enumerate(state)]
    heapq.heapify(heap)
    counted = 0

    def serve(until: float) -> None:
        nonlocal counted
        while (now := time.monotonic()) < until:
            due, index = heap[0]
            if due > now + COALESCE_S:
                time.sleep(min(due, until) - now)
                continue
            camera = state[index]
            _data = bytes(camera.next_packet)
            counted += 1
            heapq.heapreplace(heap, (camera.read_ahead(), index))

    serve(time.monotonic() + warmup_s)
    first = counted
    with CpuMeter() as meter:
        serve(time.monotonic() + duration_s)
        packets = counted - first
    return {"cpu_s": meter.cpu_s, "wall_s": meter.wall_s, "packets": packets}


def unpaced_worker(duration_s: float) -> dict[str, Any]:
    """Demux as fast as possible: CPU per packet with no pacing and no threads."""
    packets = 0
    with CpuMeter() as meter:
        deadline = time.perf_counter() + duration_s
        while time.perf_counter() < deadline:
            with av.open(str(SAMPLE_SUBSTREAM)) as container:
                for packet in container.demux(container.streams.video[0]):
                    if packet.size:
                        _data = bytes(packet)
                        packets += 1
    return {"cpu_s": meter.cpu_s, "wall_s": meter.wall_s, "packets": packets}


def run(bootstrap: str, quick: bool, step: Any) -> list[Result]:
    from bench.common import run_worker

    duration, warmup = (8.0, 3.0) if quick else (20.0, 5.0)
    camera_counts = [50, 200] if quick else [50, 200, 600]
    results: list[Result] = []
    step("ingest: bare demux, unpaced")
    unpaced = run_worker("ingest:unpaced_worker", {"duration_s": 3.0 if quick else 6.0})
    unpaced_cpu_per_packet = unpaced["cpu_s"] / unpaced["packets"]
    for cameras in camera_counts:
        step(f"ingest: {cameras} cameras through Ingest → Kafka")
        service = run_worker(
            "ingest:service_worker",
            {"bootstrap": bootstrap, "cameras": cameras, "duration_s": duration, "warmup_s": warmup},
        )
        step(f"ingest: {cameras} cameras, bare paced demux")
        bare = run_worker("ingest:bare_worker", {"cameras": cameras, "duration_s": duration, "warmup_s": warmup})
        step(f"ingest: {cameras} cameras, bare paced demux loop")
        bare_loop = run_worker(
            "ingest:bare_loop_worker", {"cameras": cameras, "duration_s": duration, "warmup_s": warmup}
        )
        expected = STREAM_FPS * cameras
        service_pps = service["packets"] / service["wall_s"]
        bare_pps = bare["packets"] / bare["wall_s"]
        service_cpu_per_packet = service["cpu_s"] / max(1, service["packets"])
        bare_cpu_per_packet = bare["cpu_s"] / max(1, bare["packets"])
        params = {
            "cameras": cameras,
            "stream": "640x360 H.264 15 fps (vtest-360p15.mp4, file://, realtime, loop)",
            "duration_s": duration,
            "expected_packets_per_s": expected,
        }
        results += [
            Result.throughput(
                "ingest",
                "packets per second",
                "packets/s",
                round(service_pps, 1),
                round(bare_pps, 1),
                **params,
                dropped_packets=service["dropped"],
            ),
            Result.cost(
                "ingest",
                "CPU per packet (paced)",
                "µs CPU/packet",
                round(service_cpu_per_packet * 1e6, 1),
                round(bare_cpu_per_packet * 1e6, 1),
                **params,
                service_by_thread=service["us_per_packet_by_thread"],
            ),
            Result.cost(
                "ingest",
                "CPU per packet vs one bare demux loop",
                "µs CPU/packet",
                round(service_cpu_per_packet * 1e6, 1),
                round(bare_loop["cpu_s"] / max(1, bare_loop["packets"]) * 1e6, 1),
                **params,
                note="bare = one thread, a heap of cameras by due time, same pacing (no Kafka, no records)",
            ),
            Result.cost(
                "ingest",
                "CPU per camera",
                "cores/camera",
                round(service["cpu_s"] / service["wall_s"] / cameras, 5),
                round(bare["cpu_s"] / bare["wall_s"] / cameras, 5),
                **params,
                cores_used_service=round(service["cpu_s"] / service["wall_s"], 3),
                cores_used_bare=round(bare["cpu_s"] / bare["wall_s"], 3),
            ),
        ]
    biggest = max(camera_counts)
    service_row = next(r for r in results if r.metric == "CPU per packet (paced)" and r.params["cameras"] == biggest)
    results.append(
        Result.cost(
            "ingest",
            "CPU per packet vs unpaced demux",
            "µs CPU/packet",
            service_row.service or 0,
            round(unpaced_cpu_per_packet * 1e6, 1),
            cameras=biggest,
            note="bare = one thread demuxing as fast as it can (no pacing, no threads)",
        )
    )
    return results
