"""Live-video shares: CPU per shared camera (remux, masked re-encode) against a bare PyAV remux of the same
packets, CPU per viewer of the real gateway, and glass-to-glass delay of a shared link.

    PYTHONPATH=. python -m bench.shares --bootstrap 127.0.0.1:31092 [--quick]

Per camera: the sample's packets (as ingest publishes them) through the gateway's HLS path in this
process, CPU seconds per second of video; bare = one PyAV MPEG-TS mux of the same packets, same run.
Per viewer and glass-to-glass: the real ingest (the sample as a live file camera) and the real gateway as
processes on a real broker; a share record is published and viewers pull the playlist and segments over
HTTP as players do. Glass-to-glass = wall time a client decoded a frame − the capture time ingest stamped
on that frame's packet (same host clock), for PyAV opening the .m3u8 (ffmpeg's HLS player starts three
segments behind the live edge) and for a player starting at the newest segment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx

from bench.common import (
    RESULTS_DIR,
    SAMPLE_H264,
    Result,
    machine_description,
    now_iso,
    pid_cpu_s,
    process_cpu_s,
)

KEY = "bench-share-key-" + "k" * 40


def _packets(seconds: int) -> list[dict[str, Any]]:
    from tests.clip_helpers import sample_packets

    records = [p.as_record() for p in sample_packets("bench-share", 1_800_000_000_000_000)]
    return records[: seconds * 10]  # 10 fps


def _bare_remux(records: list[dict[str, Any]]) -> None:
    from services.share_gateway.hls import Packet, mux_ts

    packets = [Packet.of(r) for r in records]
    starts = [i for i, p in enumerate(packets) if p.is_keyframe] + [len(packets)]
    for begin, end in zip(starts, starts[1:], strict=False):
        mux_ts(packets[begin], packets[begin:end])


_MASKERS: dict[bool, Any] = {}


def _service_remux(records: list[dict[str, Any]], masked: bool, people: bool = True) -> None:
    from libs.video_masking import VideoMaskingSettings
    from services.share_gateway.hls import HlsStream, Packet
    from services.share_gateway.masked import masked_reencoder_factory

    stream = HlsStream(1.0, 4)
    if masked and people not in _MASKERS:
        _MASKERS[people] = masked_reencoder_factory(VideoMaskingSettings(), 1, people)
    masker = _MASKERS[people]() if masked else None
    for record in records:
        packet = Packet.of(record)
        for out in masker.push(packet) if masker else [packet]:
            stream.feed(out)


def _cpu(work: Callable[[], None]) -> float:
    before = process_cpu_s()
    work()
    return process_cpu_s() - before


def per_camera(quick: bool) -> list[Result]:
    seconds = 10 if quick else 30
    records = _packets(seconds)
    for people in (False, True):  # load the models before measuring
        _service_remux(records[:20], masked=True, people=people)
    bare = min(_cpu(lambda: _bare_remux(records)) for _ in range(3)) / seconds
    remux = min(_cpu(lambda: _service_remux(records, False)) for _ in range(3)) / seconds
    faces_only = _cpu(lambda: _service_remux(records, True, people=False)) / seconds
    masked = _cpu(lambda: _service_remux(records, True)) / seconds
    params = {"video_s": seconds, "camera": "vtest 768x576 10 fps H.264"}
    return [
        Result.cost("shares", "CPU per shared camera, unmasked (remux)", "CPU s per video s", remux, bare, **params),
        Result.cost(
            "shares", "CPU per shared camera, masked: faces only", "CPU s per video s", faces_only, bare, **params
        ),
        Result.cost(
            "shares",
            "CPU per shared camera, masked: faces, heads, plates (default)",
            "CPU s per video s",
            masked,
            bare,
            **params,
        ),
    ]


def _wait(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


class Captures:
    """pts → capture times of the camera's packets (from cctv.video.packets.v1), to date decoded frames."""

    def __init__(self, bootstrap: str, camera: str) -> None:
        from libs.serde import AvroSerde, shipped_catalog
        from libs.settings import KafkaSettings
        from libs.topics import VIDEO_PACKETS
        from tests.kafka_helpers import TopicWatcher

        self.watcher = TopicWatcher(
            KafkaSettings(bootstrap_servers=bootstrap),
            VIDEO_PACKETS,
            "VideoPacket",
            AvroSerde(shipped_catalog()),
            keys=[camera.encode()],
        )

    def capture_us(self, pts_us: int, decoded_us: int) -> int | None:
        """The latest capture of a packet with this pts before it was decoded (the sample loops)."""
        found = [r["capture_time"] for r in self.watcher.snapshot() if r.get("pts_us") == pts_us]
        found = [c for c in found if c <= decoded_us]
        return max(found) if found else None


def _pyav_delays(url: str, captures: Captures, frames: int, options: dict[str, str]) -> tuple[float, list[float]]:
    """(delay of the first decoded frame, delays once caught up). A player that paces frames at real
    time keeps its first frame's delay for the whole session; one that decodes as soon as it can catches
    up to the live edge after the segments it started behind (the first 4 s are left out)."""
    first: float | None = None
    steady: list[float] = []
    with av.open(url, options=options, timeout=20) as container:
        for index, frame in enumerate(container.decode(video=0)):
            decoded_us = time.time_ns() // 1000
            if frame.pts is not None and (index == 0 or (index >= 40 and index % 5 == 0)):
                pts_us = round(float(frame.pts * frame.time_base) * 1_000_000)
                captured = captures.capture_us(pts_us, decoded_us)
                if captured is not None:
                    if index == 0:
                        first = (decoded_us - captured) / 1000
                    else:
                        steady.append((decoded_us - captured) / 1000)
            if index >= frames:
                break
    if first is None:
        raise RuntimeError("the first frame could not be matched to its capture time")
    return first, steady


def _opened(
    url: str, captures: Captures, frames: int, options: dict[str, str], opens: int
) -> tuple[list[float], list[float]]:
    firsts: list[float] = []
    steady: list[float] = []
    for _ in range(opens):
        first, rest = _pyav_delays(url + "index.m3u8", captures, frames, options)
        firsts.append(round(first, 1))
        steady += rest
    return firsts, steady


def _viewer(url: str, stop: threading.Event, counts: list[int]) -> None:
    """Pulls like a player: the playlist every second, each new segment once."""
    seen: set[str] = set()
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            playlist = client.get(url + "index.m3u8").text
            for line in playlist.splitlines():
                if line.endswith(".ts") and line not in seen:
                    seen.add(line)
                    counts[0] += len(client.get(url + line).content)
            stop.wait(1.0)


def live(bootstrap: str, quick: bool, step: Callable[[str], None]) -> list[Result]:
    import tempfile

    from cctv.devstack.services import ServiceProcess
    from cctv.inventory import publish
    from libs.cameras import CameraEntry
    from libs.kafka import create_topics, make_producer
    from libs.serde import AvroSerde, shipped_catalog
    from libs.settings import KafkaSettings
    from libs.shares import SCHEMA, ShareTokens, ended, new_share
    from libs.topics import SHARES, pipeline_topics
    from tests.kafka_helpers import free_port

    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    serde = AvroSerde(shipped_catalog())
    create_topics(kafka, pipeline_topics())
    camera = f"bench-share-{uuid.uuid4().hex[:6]}"
    publish(kafka, serde, [CameraEntry(camera_id=camera, stream_url=f"file://{SAMPLE_H264}", loop=True, realtime=True)])
    port = free_port()
    common = {"CCTV_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "CCTV_HTTP__PORT": "0", "CCTV_LOG__FORMAT": "text"}
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as scratch:
        ingest = ServiceProcess(
            "ingest", common | {"CCTV_GROUP_ID": f"cctv-ingest-{camera}"}, Path(scratch) / "ingest.log"
        ).start()
        gateway = ServiceProcess(
            "share-gateway",
            common | {"CCTV_SHARE_KEY": KEY, "CCTV_EDGE__PORT": str(port), "CCTV_EDGE__HOST": "127.0.0.1"},
            Path(scratch) / "gateway.log",
            module="services.share_gateway.main",
        ).start()
        captures = Captures(bootstrap, camera)
        producer = make_producer(kafka, "bench-shares")
        share = new_share(camera, "police", "benchmark", created_by="bench", lifetime_s=3600, masked=False)
        try:
            producer.produce(SHARES, key=share["share_id"], value=serde.serialize(SHARES, SCHEMA, share))
            producer.flush(30)
            url = f"http://127.0.0.1:{port}/s/{ShareTokens(KEY).token(share['share_id'])}/"
            _wait(lambda: _status(url + "index.m3u8") == 200, 90, "the first segment")
            frames = 80 if quick else 120
            step("shares: glass-to-glass, PyAV opening the .m3u8 (ffmpeg starts 3 segments back)")
            opens = 2 if quick else 4
            default = _opened(url, captures, frames, {}, opens)
            step("shares: glass-to-glass, a player starting at the newest segment")
            edge = _opened(url, captures, frames, {"live_start_index": "-1"}, opens)
            for name, (firsts, steady) in (
                ("PyAV default, 3 segments back", default),
                ("started at the live edge", edge),
            ):
                results.append(Result.plain("shares", f"glass-to-glass, paced player ({name})", "ms", statistics.median(firsts), opens=firsts,
                                            segment_s=1.0))  # fmt: skip
                if steady:
                    results.append(Result.plain("shares", f"glass-to-glass p50, decoding as fast as it can ({name})",
                                                "ms", statistics.median(steady), p95=_p95(steady),
                                                frames=len(steady), segment_s=1.0))  # fmt: skip
            window = 15.0 if quick else 40.0
            idle = _cpu_over(gateway, window)
            viewers = 10 if quick else 20
            step(f"shares: gateway CPU with {viewers} viewers for {window:.0f} s")
            stop, counts = threading.Event(), [0]
            threads = [threading.Thread(target=_viewer, args=(url, stop, counts), daemon=True) for _ in range(viewers)]
            for thread in threads:
                thread.start()
            time.sleep(3)  # viewers past their first playlist before counting
            busy = _cpu_over(gateway, window)
            stop.set()
            for thread in threads:
                thread.join(15)
            results += [
                Result.plain("shares", "gateway CPU, one shared camera, no viewer", "CPU s per s", idle),
                Result.plain(
                    "shares",
                    "gateway CPU per viewer",
                    "CPU s per s",
                    (busy - idle) / viewers,
                    viewers=viewers,
                    served_mbit_s=round(counts[0] * 8 / 1e6 / (window + 3), 2),
                ),  # fmt: skip
            ]
        finally:
            producer.produce(  # end the share: later runs' gateways need not stream it
                SHARES,
                key=share["share_id"],
                value=serde.serialize(SHARES, SCHEMA, ended(share, "REVOKED", "bench", 0)),
            )
            producer.flush(30)
            captures.watcher.close()
            gateway.stop()
            ingest.stop()
            publish(kafka, serde, [], [camera])
    return results


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=15).status_code
    except httpx.HTTPError:
        return None  # the gateway is still starting


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _cpu_over(process: Any, seconds: float) -> float:
    """CPU seconds per wall second of a running service process."""
    pid = process.pid
    assert pid is not None
    before, started = pid_cpu_s(pid), time.monotonic()
    time.sleep(seconds)  # a measurement window, not a wait for a condition
    return (pid_cpu_s(pid) - before) / (time.monotonic() - started)


def run(bootstrap: str, quick: bool, step: Callable[[str], None]) -> list[Result]:
    step("shares: CPU per shared camera (remux, masked) vs a bare PyAV remux")
    return per_camera(quick) + live(bootstrap, quick, step)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "shares.json")
    args = parser.parse_args()
    results = run(args.bootstrap, args.quick, lambda text: print(text, flush=True))
    entries = [
        r.as_dict() | {"machine": machine_description(), "date": now_iso(), "quick": args.quick} for r in results
    ]
    args.out.write_text(json.dumps(entries, indent=2) + "\n")
    for entry in entries:
        print(json.dumps({k: entry[k] for k in ("metric", "service", "bare", "ratio", "unit", "params")}))


if __name__ == "__main__":
    main()
