"""Ingest against two things real cameras do: a stream that stays connected but stops sending (a hung
encoder, a half-dead NVR) must be detected and reconnected; and an H.265 camera (most new cameras
default to it) must flow from ingest through the frame-sampler's decoder to JPEG frames."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from libs.cameras import CameraEntry
from services.frame_sampler.config import FrameSamplerConfig
from services.frame_sampler.decoder import CameraDecoder
from services.frame_sampler.outputs import EncodedPacket
from services.ingest.core import (
    CameraPuller,
    CameraState,
    PacketRecord,
    PullSettings,
    StatusChange,
)
from tests.kafka_helpers import wait_for

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-h264.mp4"
READ_TIMEOUT_S = 3.0
SETTINGS = PullSettings(
    open_timeout_s=10, read_timeout_s=READ_TIMEOUT_S, backoff_initial_s=0.2, backoff_max_s=1.0, status_interval_s=1
)


def ffmpeg(*args: str) -> None:
    binary = shutil.which("ffmpeg")
    if binary is None:
        pytest.fail("ffmpeg not found: run scripts/install-system-deps.sh (make test does)")
    subprocess.run([binary, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=300)


class TimedRecorder:
    """Packets and status changes with the monotonic time each arrived."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, PacketRecord]] = []
        self.statuses: list[tuple[float, StatusChange]] = []
        self.lock = threading.Lock()

    def packet(self, record: PacketRecord) -> None:
        with self.lock:
            self.packets.append((time.monotonic(), record))

    def status(self, change: StatusChange) -> None:
        with self.lock:
            self.statuses.append((time.monotonic(), change))

    def sessions(self) -> list[str]:
        with self.lock:
            return list(dict.fromkeys(p.session_id for _t, p in self.packets))


def test_connected_but_silent_stream_is_detected_and_reconnected(tmp_path: Path) -> None:
    """An HTTP camera sends the first part of an MPEG-TS stream, then keeps the connection open and
    sends nothing: after read_timeout_s the camera is RECONNECTING, and the next connection starts a
    new session at a keyframe."""
    transport_stream = tmp_path / "camera.ts"
    ffmpeg("-i", str(SAMPLE), "-c", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "mpegts", str(transport_stream))
    payload = transport_stream.read_bytes()
    release = threading.Event()
    connections: list[float] = []
    went_silent: list[float] = []

    class StallingCamera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            connections.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 3])
            self.wfile.flush()
            went_silent.append(time.monotonic())
            release.wait(120)  # connected, silent

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StallingCamera)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    recorder = TimedRecorder()
    url = f"http://127.0.0.1:{server.server_address[1]}/camera.ts"
    # realtime=False: packets are handed over as they are read, so the last one marks when data stopped.
    puller = CameraPuller(
        CameraEntry(camera_id="stalled-1", stream_url=url, realtime=False), recorder.packet, recorder.status, SETTINGS
    ).start()
    try:
        wait_for(lambda: len(recorder.sessions()) >= 2, 90, "a second session after the stall")
    finally:
        puller.stop()
        release.set()
        puller.join(10)
        server.shutdown()
    first, second = recorder.sessions()[:2]
    first_packets = [(t, p) for t, p in recorder.packets if p.session_id == first]
    assert len(first_packets) >= 100, "the part sent before the stall was ingested"
    stalls = [(t, s) for t, s in recorder.statuses if s.state == CameraState.RECONNECTING and s.session_id == first]
    assert stalls, [s for _t, s in recorder.statuses]
    noticed_at, stall = stalls[0]
    assert stall.reason is not None and f"no data for {READ_TIMEOUT_S:g} s" in stall.reason, stall.reason
    # Not before the timeout ran out (a stall, not a hiccup), and by a new connection to the camera.
    assert noticed_at - went_silent[0] >= READ_TIMEOUT_S * 0.9, (noticed_at, went_silent)
    assert len(connections) >= 2 and connections[1] >= noticed_at
    second_packets = [p for _t, p in recorder.packets if p.session_id == second]
    assert second_packets[0].is_keyframe and second_packets[0].sequence == 0


def test_h265_camera_flows_from_ingest_to_sampled_jpeg_frames(tmp_path: Path) -> None:
    """10 s of the campus footage re-encoded as H.265 (hvc1 in MP4, one keyframe a second, as cameras
    stream it): ingest demuxes it with the codec and parameter sets, the frame-sampler decodes it, sees
    the people walking and publishes real JPEGs at the configured rate."""
    clip = tmp_path / "hevc.mp4"
    ffmpeg(
        "-i",
        str(SAMPLE),
        "-t",
        "10",
        "-an",
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "keyint=10:min-keyint=10:bframes=0:log-level=error",
        "-tag:v",
        "hvc1",
        str(clip),
    )
    packets: list[PacketRecord] = []
    states: list[CameraState] = []
    entry = CameraEntry(camera_id="hevc-1", stream_url=f"file://{clip}", realtime=False)
    CameraPuller(entry, packets.append, lambda s: states.append(s.state), SETTINGS).run()  # returns at the end
    assert states[-1] == CameraState.STOPPED and len(packets) == 100, (states, len(packets))
    keyframes = [p for p in packets if p.is_keyframe]
    assert len(keyframes) == 10 and all(p.codec == "hevc" and p.extradata for p in keyframes)
    assert (packets[0].width, packets[0].height) == (768, 576)

    decoder = CameraDecoder(
        "hevc-1", FrameSamplerConfig.model_validate({"sampling": {"mode": "fps", "fps": 2, "heartbeat_s": 0.001}})
    )  # emit every pick
    frames = []
    codec, extradata = "", None
    for p in packets:
        if p.is_keyframe:  # like the service: later packets decode with the last keyframe's parameter sets
            codec, extradata = p.codec or "", p.extradata
        frames += (
            decoder.process(
                EncodedPacket(
                    "hevc-1",
                    codec,
                    extradata,
                    (1, 1_000_000),
                    p.pts_us,
                    p.dts_us,
                    p.is_keyframe,
                    p.data,
                    p.sequence,
                    p.session_id,
                    p.capture_time // 1000,
                )
            )
            .finish()
            .frames
        )
    frames += decoder.flush().finish().frames
    assert decoder.counters.decode_errors == 0 and decoder.counters.missing_extradata_errors == 0
    assert decoder.activity_state.state == "active", "people walk through the footage"
    assert 19 <= len(frames) <= 20, [f.sequence for f in frames]  # 2 a second of 10 s
    assert sum(f.reason == "motion" for f in frames) >= 5
    assert all(f.jpeg[:2] == b"\xff\xd8" and (f.source_width, f.source_height) == (768, 576) for f in frames)
