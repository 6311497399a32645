"""Ingest's demux loops (many cameras on one thread) and its VideoPacket fast encoder, without Kafka:
real sample videos as cameras, the shipped schemas and the shared serde as the reference encoder."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from libs.cameras import CameraEntry
from libs.serde import make_serde
from libs.settings import RegistrySettings
from libs.topics import VIDEO_PACKETS
from services.ingest.loops import DemuxLoop, LoopedCamera, LoopPool, runs_on_loop
from services.ingest.model import CameraState, PacketRecord, PullSettings, StatusChange
from services.ingest.packet_avro import VideoPacketEncoder
from services.ingest.session import CameraSession
from tests.kafka_helpers import refusing_port, wait_for

REPO = Path(__file__).resolve().parents[1]
SUBSTREAM = REPO / "samples" / "vtest-360p15.mp4"  # 640x360, 15 fps
MAIN = REPO / "samples" / "vtest-h264.mp4"
FAST = PullSettings(open_timeout_s=5, read_timeout_s=3, backoff_initial_s=0.2, backoff_max_s=1.0, status_interval_s=1)


class Recorder:
    def __init__(self) -> None:
        self.packets: dict[str, list[PacketRecord]] = {}
        self.statuses: list[StatusChange] = []
        self.lock = threading.Lock()

    def packet(self, record: PacketRecord) -> None:
        with self.lock:
            self.packets.setdefault(record.camera_id, []).append(record)

    def status(self, change: StatusChange) -> None:
        with self.lock:
            self.statuses.append(change)

    def count(self, camera_id: str) -> int:
        with self.lock:
            return len(self.packets.get(camera_id, []))

    def states(self, camera_id: str) -> list[CameraState]:
        with self.lock:
            return [s.state for s in self.statuses if s.camera_id == camera_id]


def looped(loop: DemuxLoop, recorder: Recorder, entry: CameraEntry, settings: PullSettings = FAST) -> LoopedCamera:
    return LoopedCamera(CameraSession(entry, recorder.packet, recorder.status, settings), loop)


def test_one_loop_serves_many_paced_cameras_in_real_time_and_stops_them_all() -> None:
    recorder = Recorder()
    loop = DemuxLoop("test-demux")
    threads_before = threading.active_count()
    cameras = [
        looped(
            loop,
            recorder,
            CameraEntry(camera_id=f"sub-{i:02d}", stream_url=f"file://{SUBSTREAM}", loop=True, realtime=True),
        )
        for i in range(40)
    ]
    assert threading.active_count() == threads_before, "cameras on a loop start no threads"
    wait_for(lambda: all(recorder.count(f"sub-{i:02d}") > 0 for i in range(40)), 30, "every camera online")
    first = {f"sub-{i:02d}": recorder.count(f"sub-{i:02d}") for i in range(40)}
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started >= 4, 10, "four seconds of streaming")
    elapsed = time.monotonic() - started
    rates = [(recorder.count(c) - n) / elapsed for c, n in first.items()]
    # Paced to the file's 15 fps: never faster than real time, and on a loaded machine not far behind.
    assert max(rates) < 15 * 1.25, rates
    assert min(rates) > 15 * 0.5, rates
    stop_started = time.monotonic()
    for camera in cameras:
        camera.stop("test over")
    assert all(camera.join(10) for camera in cameras)
    assert time.monotonic() - stop_started < 10
    assert not any(camera.alive for camera in cameras)
    for i in range(40):
        camera_id = f"sub-{i:02d}"
        packets = recorder.packets[camera_id]
        assert [p.sequence for p in packets] == list(range(len(packets)))
        assert packets[0].is_keyframe and packets[0].codec == "h264" and packets[0].width == 640
        assert recorder.states(camera_id)[:2] == [CameraState.CONNECTING, CameraState.ONLINE]
        assert recorder.states(camera_id)[-1] == CameraState.STOPPED
    assert len(loop) == 0


def test_an_unpaced_file_does_not_starve_a_paced_camera_on_the_same_loop() -> None:
    recorder = Recorder()
    loop = DemuxLoop("test-fair")
    greedy = looped(
        loop, recorder, CameraEntry(camera_id="greedy", stream_url=f"file://{MAIN}", loop=True, realtime=False)
    )
    paced = looped(
        loop, recorder, CameraEntry(camera_id="paced", stream_url=f"file://{SUBSTREAM}", loop=True, realtime=True)
    )
    wait_for(lambda: recorder.count("paced") > 0 and recorder.count("greedy") > 2000, 60, "both flowing")
    before, started = recorder.count("paced"), time.monotonic()
    wait_for(lambda: time.monotonic() - started >= 3, 10, "three seconds")
    rate = (recorder.count("paced") - before) / (time.monotonic() - started)
    for camera in (greedy, paced):
        camera.stop()
    assert greedy.join(10) and paced.join(10)
    assert rate > 15 * 0.5, f"paced camera got {rate:.1f} fps beside an unpaced one"


def test_a_camera_in_backoff_stops_at_once_and_a_file_end_finishes(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(random.Random(3).randbytes(100_000))
    recorder = Recorder()
    loop = DemuxLoop("test-stop")
    slow_retry = FAST.model_copy(update={"backoff_initial_s": 60.0, "backoff_max_s": 60.0})
    broken = looped(loop, recorder, CameraEntry(camera_id="broken", stream_url=f"file://{garbage}"), slow_retry)
    once = looped(
        loop, recorder, CameraEntry(camera_id="once", stream_url=f"file://{SUBSTREAM}", loop=False, realtime=False)
    )
    wait_for(lambda: CameraState.FAILED in recorder.states("broken"), 30, "the broken file failed")
    started = time.monotonic()
    broken.stop("removed from inventory")
    assert broken.join(5), "a 60 s backoff must not delay a stop"
    assert time.monotonic() - started < 5
    stopped = [s for s in recorder.statuses if s.camera_id == "broken" and s.state == CameraState.STOPPED]
    assert [s.reason for s in stopped] == ["removed from inventory"]
    assert once.join(60), "a non-looping file ends by itself"
    assert recorder.states("once")[-1] == CameraState.STOPPED
    assert [s.reason for s in recorder.statuses if s.camera_id == "once"][-1] == "end of file"
    assert recorder.count("once") > 100


def test_pool_spreads_cameras_and_only_local_files_go_on_loops() -> None:
    pool = LoopPool(3)
    recorder = Recorder()
    handles = [
        pool.attach(
            CameraSession(
                CameraEntry(camera_id=f"c{i}", stream_url=f"file://{SUBSTREAM}", loop=True, realtime=True),
                recorder.packet,
                recorder.status,
                FAST,
            )
        )
        for i in range(9)
    ]
    assert sorted(len(loop) for loop in pool.loops) == [3, 3, 3]
    for handle in handles:
        handle.stop()
    assert all(handle.join(10) for handle in handles)
    assert runs_on_loop(CameraEntry(camera_id="f", stream_url=f"file://{SUBSTREAM}"))
    for url in ("rtsp://10.0.0.5/stream1", "http://10.0.0.5/video.mjpg", "https://h/live.m3u8"):
        assert not runs_on_loop(CameraEntry(camera_id="n", stream_url=url)), url


@pytest.mark.parametrize(
    "record",
    [
        PacketRecord(
            "cam-1",
            "s-1",
            0,
            1_764_480_000_000_000,
            0,
            -66_666,
            66_666,
            True,
            "h264",
            b"\x01\x64",
            1,
            1_000_000,
            640,
            360,
            b"\x00" * 5000,
        ),
        PacketRecord("cam-1", "s-1", 2**40, 1, None, None, None, False, None, None, None, None, None, None, b""),
        PacketRecord(
            "kamera-ü", "s-2", 63, 2**62, 2**62, -(2**62), 1, False, None, None, None, None, None, None, b"x" * 200
        ),
        PacketRecord("cam-2", "s-3", 64, 0, -1, 1, None, True, "hevc", None, 1, 90_000, None, 1080, b"\x00\x00\x01"),
    ],
)
def test_fast_encoder_writes_exactly_what_fastavro_writes(record: PacketRecord) -> None:
    serde = make_serde(RegistrySettings(url=None))
    encoder = VideoPacketEncoder(serde, VIDEO_PACKETS)
    encoded = encoder.encode(record)
    assert encoded == serde.serialize(VIDEO_PACKETS, "VideoPacket", record.as_record())
    assert serde.deserialize(VIDEO_PACKETS, "VideoPacket", encoded) == record.as_record()
    # A new session of the same camera must not reuse the cached ids of the previous one.
    renewed = PacketRecord(**(record.as_record() | {"session_id": "s-new"}))
    assert serde.deserialize(VIDEO_PACKETS, "VideoPacket", encoder.encode(renewed))["session_id"] == "s-new"


def test_unreachable_network_cameras_hold_no_thread_while_they_wait_to_retry() -> None:
    """The storm of issue 20, small: 300 refused cameras on one loop. Threads exist only for attempts
    under way, every failure reads `connection refused`, and a stop ends them all at once."""
    recorder = Recorder()
    loop = DemuxLoop("test-refused")
    patient_retry = FAST.model_copy(update={"backoff_initial_s": 2.0, "backoff_max_s": 5.0})
    threads_before = threading.active_count()
    peak = [0]
    with refusing_port() as port:
        cameras = [
            looped(
                loop,
                recorder,
                CameraEntry(camera_id=f"r{i:03d}", stream_url=f"rtsp://127.0.0.1:{port}/s"),
                patient_retry,
            )
            for i in range(300)
        ]

        def failed_twice() -> bool:
            peak[0] = max(peak[0], threading.active_count() - threads_before)
            return all(recorder.states(f"r{i:03d}").count(CameraState.FAILED) >= 2 for i in range(300))

        wait_for(failed_twice, 90, "every camera failed twice")
        # Between attempts (2–5 s backoff, a refusal takes milliseconds) nearly all wait on the loop.
        wait_for(lambda: threading.active_count() - threads_before < 60, 10, "threads handed back")
        started = time.monotonic()
        for camera in cameras:
            camera.stop("test over")
        assert all(camera.join(10) for camera in cameras)
        assert time.monotonic() - started < 10
    assert peak[0] < 300, f"{peak[0]} threads for 300 cameras"
    reasons = {s.reason.split(";")[0] for s in recorder.statuses if s.state == CameraState.FAILED and s.reason}
    assert reasons == {"connection refused"}, reasons
    assert all(recorder.states(f"r{i:03d}")[-1] == CameraState.STOPPED for i in range(300))


def test_a_network_camera_on_a_loop_streams_on_its_thread_and_reconnects() -> None:
    """An http:// camera scheduled by a loop: the whole clip flows, the end of the response is a dropped
    stream, and the next session starts at a keyframe; a file camera on the same loop is served meanwhile."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(MAIN.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    recorder = Recorder()
    loop = DemuxLoop("test-http")
    patient = FAST.model_copy(update={"read_timeout_s": 30.0})
    url = f"http://127.0.0.1:{server.server_address[1]}/{MAIN.name}"
    http_camera = looped(loop, recorder, CameraEntry(camera_id="http-1", stream_url=url), patient)
    paced = looped(
        loop, recorder, CameraEntry(camera_id="paced", stream_url=f"file://{SUBSTREAM}", loop=True, realtime=True)
    )
    try:
        wait_for(lambda: len({p.session_id for p in recorder.packets.get("http-1", [])}) >= 2, 60, "a second session")
    finally:
        for camera in (http_camera, paced):
            camera.stop()
        assert http_camera.join(10) and paced.join(10)
        server.shutdown()
    packets = recorder.packets["http-1"]
    first_session = packets[0].session_id
    assert sum(p.session_id == first_session for p in packets) == 795  # the whole clip
    second = [p for p in packets if p.session_id != first_session]
    assert second[0].is_keyframe and second[0].sequence == 0
    reasons = [s.reason for s in recorder.statuses if s.state == CameraState.RECONNECTING and s.reason]
    assert reasons and reasons[0].startswith("end of stream")
    assert recorder.count("paced") > 0  # served beside it (the clip over HTTP takes about a second)


def test_a_silent_network_camera_does_not_stall_the_file_cameras_of_its_loop() -> None:
    """A server that accepts and then says nothing: the camera waits out its timeout on its own thread
    while the paced file cameras of the same loop keep real time."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    release = threading.Event()

    def accept_and_hold() -> None:
        listener.settimeout(0.2)
        while not release.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    threading.Thread(target=accept_and_hold, daemon=True).start()
    recorder = Recorder()
    loop = DemuxLoop("test-silent")
    silent_settings = FAST.model_copy(update={"open_timeout_s": 2.0, "read_timeout_s": 2.0})
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/live.ts"
    silent = looped(loop, recorder, CameraEntry(camera_id="silent", stream_url=url), silent_settings)
    files = [
        looped(
            loop, recorder, CameraEntry(camera_id=f"f{i}", stream_url=f"file://{SUBSTREAM}", loop=True, realtime=True)
        )
        for i in range(20)
    ]
    try:
        wait_for(lambda: all(recorder.count(f"f{i}") > 0 for i in range(20)), 30, "file cameras online")
        wait_for(lambda: held, 30, "the silent camera connected")
        before, started = {f"f{i}": recorder.count(f"f{i}") for i in range(20)}, time.monotonic()
        wait_for(lambda: CameraState.FAILED in recorder.states("silent"), 30, "the silent camera timed out")
        elapsed = time.monotonic() - started
        assert elapsed > 1.0, "the read timeout was waited out"
        rates = [(recorder.count(c) - n) / elapsed for c, n in before.items()]
        assert min(rates) > 15 * 0.5, rates
    finally:
        for camera in [silent, *files]:
            camera.stop()
        assert all(camera.join(10) for camera in [silent, *files])
        release.set()
        listener.close()
        for connection in held:
            connection.close()
    assert recorder.count("silent") == 0
    reason = next(s.reason for s in recorder.statuses if s.camera_id == "silent" and s.state == CameraState.FAILED)
    assert reason and reason.startswith("no data for 2 s (timeout); retry in"), reason
