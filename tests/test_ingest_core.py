"""Ingest core without Kafka: real files and a real RTSP server (GStreamer) as cameras."""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path

import pytest

from cctv.devstack.rtsp import gstreamer_available, start_rtsp_server
from libs.cameras import CameraEntry
from services.ingest.core import (
    CameraPuller,
    CameraState,
    GopGate,
    PacketRecord,
    PullSettings,
    StatusChange,
    backoff_delay,
    describe_error,
    url_with_credentials,
)
from tests.kafka_helpers import free_port, refusing_port, wait_for

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-h264.mp4"
FAST = PullSettings(open_timeout_s=5, read_timeout_s=3, backoff_initial_s=0.2, backoff_max_s=1.0, status_interval_s=1)
# For sources whose test is not about silence: on a loaded 2-core machine a server can stall for more
# than FAST's 3 s, and a spurious read timeout would cut the session the test counts.
PATIENT = FAST.model_copy(update={"read_timeout_s": 30.0})


@pytest.fixture
def gstreamer() -> None:
    """The RTSP camera needs Debian's GStreamer; `make test` installs it, so its absence is a failure."""
    if not gstreamer_available():
        pytest.fail("GStreamer RTSP server not available: run scripts/install-system-deps.sh (make test does)")


class Recorder:
    def __init__(self) -> None:
        self.packets: list[PacketRecord] = []
        self.statuses: list[StatusChange] = []
        self.lock = threading.Lock()

    def packet(self, record: PacketRecord) -> None:
        with self.lock:
            self.packets.append(record)

    def status(self, change: StatusChange) -> None:
        with self.lock:
            self.statuses.append(change)

    def states(self) -> list[CameraState]:
        with self.lock:
            return [s.state for s in self.statuses]


def test_backoff_is_capped_exponential_with_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, 0.5, 30, 0.25, rng) for n in range(1, 12)]
    assert 0.375 <= delays[0] <= 0.625
    assert 0.75 <= delays[1] <= 1.25
    assert all(22.5 <= d <= 37.5 for d in delays[7:])  # capped at 30 s +/- 25 %
    assert len({round(d, 6) for d in delays[7:]}) > 1  # jitter: not in lockstep


def test_gop_gate_drops_whole_gops_and_recovers() -> None:
    gate = GopGate()
    sequence = [(True, True), (False, True), (False, False), (False, True), (False, True), (True, True), (False, True)]
    admitted = [gate.admit(key, room) for key, room in sequence]
    # Room ran out mid-GOP: the rest of that GOP is dropped even when room returns; the next keyframe resumes.
    assert admitted == [True, True, False, False, False, True, True]
    assert gate.dropped == 3
    gate.refused()
    assert gate.admit(False, True) is False and gate.admit(True, True) is True


def test_credentials_are_inserted_and_never_described() -> None:
    url = url_with_credentials("rtsp://10.1.2.3:554/stream1", "admin:p@ss:word")
    assert url == "rtsp://admin:p%40ss%3Aword@10.1.2.3:554/stream1"
    error = OSError(f"Server returned 401 Unauthorized (authorization failed): '{url}'")
    reason = describe_error(error, ("p@ss:word", "p%40ss%3Aword"), 3)
    assert reason == "authentication refused (401 Unauthorized)"
    other = describe_error(RuntimeError(f"weird failure at {url} token=abc"), ("p@ss:word", "p%40ss%3Aword"), 3)
    assert "p%40ss" not in other and "p@ss" not in other and "abc" not in other


def test_file_camera_records_in_order_with_keyframe_headers_and_loops() -> None:
    recorder = Recorder()
    entry = CameraEntry(camera_id="file-1", stream_url=f"file://{SAMPLE}", loop=True, realtime=False)
    puller = CameraPuller(entry, recorder.packet, recorder.status, FAST).start()
    wait_for(lambda: len(recorder.packets) >= 1700, 60, "two loops of the sample file")
    puller.stop()
    assert puller.join(10)
    packets = recorder.packets
    assert [p.sequence for p in packets] == list(range(len(packets)))
    assert len({p.session_id for p in packets}) == 1  # looping is one session
    keyframes = [p for p in packets if p.is_keyframe]
    assert keyframes[0] is packets[0]
    for key in keyframes:
        assert key.codec == "h264" and key.extradata and key.width == 768 and key.height == 576
        assert (key.time_base_num, key.time_base_den) == (1, 1_000_000)
    assert all(p.codec is None and p.extradata is None for p in packets if not p.is_keyframe)
    dts = [p.dts_us for p in packets]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False)), "timestamps keep increasing across loops"
    assert dts[900] > 79_000_000
    assert recorder.states()[:2] == [CameraState.CONNECTING, CameraState.ONLINE]
    assert recorder.states()[-1] == CameraState.STOPPED


def test_garbage_file_fails_clearly_and_retries(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(random.Random(1).randbytes(200_000))
    recorder = Recorder()
    puller = CameraPuller(
        CameraEntry(camera_id="bad-1", stream_url=f"file://{garbage}"), recorder.packet, recorder.status, FAST
    ).start()
    wait_for(lambda: recorder.states().count(CameraState.FAILED) >= 2, 30, "two failed attempts")
    puller.stop()
    assert puller.join(10)
    failed = [s for s in recorder.statuses if s.state == CameraState.FAILED]
    assert "invalid data" in failed[0].reason and "retry in" in failed[0].reason
    assert failed[1].reconnect_attempt == failed[0].reconnect_attempt + 1
    assert recorder.packets == []


def test_rtsp_server_killed_and_restarted_reconnects_and_resumes(gstreamer: None) -> None:
    port = free_port()
    server = start_rtsp_server({"cam": SAMPLE}, port=port)
    recorder = Recorder()
    entry = CameraEntry(camera_id="rtsp-1", stream_url=f"rtsp://127.0.0.1:{port}/cam")
    puller = CameraPuller(entry, recorder.packet, recorder.status, FAST).start()
    try:
        wait_for(lambda: len(recorder.packets) >= 30, 30, "packets from the RTSP camera")
        first_session = recorder.packets[0].session_id
        assert recorder.packets[0].is_keyframe and recorder.packets[0].extradata
        server.stop()
        wait_for(lambda: CameraState.RECONNECTING in recorder.states(), 30, "the drop to be noticed")
        server = start_rtsp_server({"cam": SAMPLE}, port=port)
        wait_for(lambda: any(p.session_id != first_session for p in recorder.packets[-5:]), 60, "packets after restart")
    finally:
        puller.stop()
        puller.join(10)
        server.stop()
    states = recorder.states()
    online = [i for i, s in enumerate(states) if s == CameraState.ONLINE]
    drop = states.index(CameraState.RECONNECTING)
    assert online[0] < drop < online[-1], states
    second = [p for p in recorder.packets if p.session_id != first_session]
    assert second[0].is_keyframe and second[0].sequence == 0 and second[0].extradata


def test_wrong_url_and_refused_auth_fail_clearly_while_others_flow(
    gstreamer: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "Zebra-7f3q-secret"
    with refusing_port() as closed_port:  # refuses connections until the block ends
        server = start_rtsp_server({"cam": SAMPLE}, port=free_port(), user="operator", password=password)
        good, wrong_path, bad_auth, refused = Recorder(), Recorder(), Recorder(), Recorder()
        base = f"rtsp://127.0.0.1:{server.port}"
        pullers = [
            CameraPuller(
                CameraEntry(camera_id="good", stream_url=f"{base}/cam", credentials_ref="CAM_GOOD"),
                good.packet,
                good.status,
                FAST,
                environ={"CCTV_CAMERA_CREDENTIALS__CAM_GOOD": f"operator:{password}"},
            ),
            CameraPuller(
                CameraEntry(
                    camera_id="wrong-path", stream_url=f"rtsp://operator:{password}@127.0.0.1:{server.port}/nope"
                ),
                wrong_path.packet,
                wrong_path.status,
                FAST,
            ),
            CameraPuller(
                CameraEntry(
                    camera_id="bad-auth", stream_url=f"rtsp://operator:{password}x@127.0.0.1:{server.port}/cam"
                ),
                bad_auth.packet,
                bad_auth.status,
                FAST,
            ),
            CameraPuller(
                CameraEntry(camera_id="refused", stream_url=f"rtsp://127.0.0.1:{closed_port}/cam"),
                refused.packet,
                refused.status,
                FAST,
            ),
        ]
        for puller in pullers:
            puller.start()
        try:
            wait_for(
                lambda: all(r.states().count(CameraState.FAILED) >= 1 for r in (wrong_path, bad_auth, refused)),
                60,
                "the three bad cameras to fail",
            )
            wait_for(lambda: len(good.packets) >= 50, 60, "the good camera to keep flowing")
        finally:
            for puller in pullers:
                puller.stop()
            for puller in pullers:
                puller.join(10)
            server.stop()

    def first_failure(recorder: Recorder) -> str:
        return next(s.reason for s in recorder.statuses if s.state == CameraState.FAILED)

    assert "not found" in first_failure(wrong_path)
    assert "authentication refused" in first_failure(bad_auth)
    assert "connection refused" in first_failure(refused)
    everything = [repr(s) for r in (good, wrong_path, bad_auth, refused) for s in r.statuses]
    everything += [repr(p)[:500] for p in good.packets[:5]]
    everything += [record.getMessage() for record in caplog.records]
    everything += [caplog.text]
    assert not [text for text in everything if password in text]


def test_rtsps_camera_streams_over_tls_with_credentials_kept_out_of_everything(
    gstreamer: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Secure RTSP (RTSP over TLS, as current Axis/Hanwha/Hikvision cameras offer it) with basic auth:
    the GStreamer server holds a fresh self-signed certificate, as cameras ship; packets flow, and the
    password appears in no status, record or log line."""
    import subprocess

    caplog.set_level(logging.DEBUG)
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=camera",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pem = tmp_path / "camera.pem"
    pem.write_text(certificate.read_text() + key.read_text())
    password = "Kestrel-91x-tls"
    server = start_rtsp_server({"cam": SAMPLE}, port=free_port(), user="operator", password=password, tls_pem=pem)
    recorder = Recorder()
    url = server.url("cam", with_credentials=False)
    assert url.startswith("rtsps://")
    puller = CameraPuller(
        CameraEntry(camera_id="secure", stream_url=url, credentials_ref="SECURE"),
        recorder.packet,
        recorder.status,
        FAST,
        environ={"CCTV_CAMERA_CREDENTIALS__SECURE": f"operator:{password}"},
    )
    puller.start()
    try:
        wait_for(lambda: len(recorder.packets) >= 30, 60, "30 packets over rtsps")
    finally:
        puller.stop()
        puller.join(10)
        server.stop()
    assert recorder.packets[0].is_keyframe and recorder.packets[0].codec == "h264"
    assert CameraState.ONLINE in recorder.states()
    everything = [repr(s) for s in recorder.statuses] + [repr(p)[:500] for p in recorder.packets[:5]] + [caplog.text]
    assert not [text for text in everything if password in text]


def test_mjpeg_over_http_camera_is_stamped_with_its_arrival_clock(tmp_path: Path) -> None:
    """MJPEG over HTTP, as older and cheaper IP cameras serve it (multipart/x-mixed-replace), from
    Debian's ffmpeg as the camera: the clip re-encoded to JPEG frames at its real 15 fps. The format
    has no timestamps and FFmpeg's demuxer assumes 25 fps, so ingest stamps packets with their arrival
    time; the frame-sampler then picks 2 frames per real second."""
    import shutil
    import subprocess

    from services.frame_sampler.config import FrameSamplerConfig
    from services.frame_sampler.decoder import CameraDecoder
    from services.frame_sampler.outputs import EncodedPacket

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg not found: run scripts/install-system-deps.sh (make test does)")
    port = free_port()
    camera = subprocess.Popen(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            str(REPO / "samples" / "vtest-360p15.mp4"),
            "-an",
            "-c:v",
            "mjpeg",
            "-q:v",
            "5",
            "-f",
            "mpjpeg",
            "-listen",
            "1",
            f"http://127.0.0.1:{port}/video.mjpg",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    recorder = Recorder()
    puller = CameraPuller(
        CameraEntry(camera_id="mjpeg-1", stream_url=f"http://127.0.0.1:{port}/video.mjpg"),
        recorder.packet,
        recorder.status,
        PATIENT,
    )
    puller.start()
    try:
        wait_for(lambda: len(recorder.packets) >= 61, 60, f"4 s of MJPEG frames ({camera.poll()=})")
    finally:
        puller.stop()
        puller.join(10)
        camera.terminate()
        camera.wait(10)
    packets = [p for p in recorder.packets if p.session_id == recorder.packets[0].session_id][:61]
    assert {p.codec for p in packets if p.is_keyframe} == {"mjpeg"} and all(p.is_keyframe for p in packets)
    pts_span_s = (packets[-1].pts_us - packets[0].pts_us) / 1e6
    capture_span_s = (packets[-1].capture_time - packets[0].capture_time) / 1e6
    # 61 frames: 2.4 s at FFmpeg's invented 25 fps, 4 s at the camera's real 15 fps (-re cannot send
    # faster; a loaded machine may deliver slower, which the arrival clock must then show, not hide).
    assert abs(pts_span_s - capture_span_s) < 0.05 and pts_span_s > 3.3, (pts_span_s, capture_span_s)
    decoder = CameraDecoder(
        "mjpeg-1", FrameSamplerConfig.model_validate({"sampling": {"mode": "fps", "fps": 2, "heartbeat_s": 0.001}})
    )
    frames = []
    for p in packets:
        frames += (
            decoder.process(
                EncodedPacket(
                    "mjpeg-1",
                    "mjpeg",
                    None,
                    (1, 1_000_000),
                    p.pts_us,
                    p.dts_us,
                    True,
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
    # 2 per second of stamped time, however long the arrival took.
    assert abs(len(frames) - 2 * pts_span_s) <= 2, (len(frames), pts_span_s, decoder.counters.as_dict())
    assert (frames[0].source_width, frames[0].source_height) == (640, 360)


def test_http_camera_streams_and_reconnects_when_the_stream_ends() -> None:
    """An http:// source (the clip served by Python's own HTTP server): packets flow, and the end of the
    response is a dropped stream that is reconnected, with a new session starting at a keyframe."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SAMPLE.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    recorder = Recorder()
    url = f"http://127.0.0.1:{server.server_address[1]}/{SAMPLE.name}"
    puller = CameraPuller(
        CameraEntry(camera_id="http-1", stream_url=url), recorder.packet, recorder.status, PATIENT
    ).start()
    try:
        wait_for(
            lambda: len({p.session_id for p in recorder.packets}) >= 2, 60, "a second session after the first ended"
        )
    finally:
        puller.stop()
        puller.join(10)
        server.shutdown()
    first_session = recorder.packets[0].session_id
    assert sum(p.session_id == first_session for p in recorder.packets) == 795  # the whole clip
    second = [p for p in recorder.packets if p.session_id != first_session]
    assert second[0].is_keyframe and second[0].sequence == 0
    reasons = [s.reason for s in recorder.statuses if s.state == CameraState.RECONNECTING and s.reason]
    assert reasons and reasons[0].startswith("end of stream")


def test_hls_camera_streams_a_live_playlist_that_the_frame_sampler_decodes(gstreamer: None, tmp_path: Path) -> None:
    """An HLS source, as NVRs and media gateways publish cameras: GStreamer's hlssink2 cuts the clip,
    paced at real time, into MPEG-TS segments with a sliding live playlist, served by Python's HTTP
    server. Packets flow from the playlist, start at a keyframe, and decode in the frame-sampler's core
    (MPEG-TS carries H.264 parameter sets in-band, so keyframes may come without extradata)."""
    import functools
    import http.server
    import subprocess

    from services.frame_sampler.config import FrameSamplerConfig
    from services.frame_sampler.decoder import CameraDecoder
    from services.frame_sampler.outputs import EncodedPacket

    hls = tmp_path / "hls"
    hls.mkdir()
    segmenter = subprocess.Popen(
        [
            "gst-launch-1.0",
            "-q",
            "filesrc",
            f"location={REPO / 'samples' / 'vtest-360p15.mp4'}",
            "!",
            "qtdemux",
            "!",
            "h264parse",
            "!",
            "identity",
            "sync=true",
            "!",
            "hlssink2",
            f"location={hls}/segment%05d.ts",
            f"playlist-location={hls}/live.m3u8",
            "target-duration=1",
            "playlist-length=4",
            "max-files=8",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(hls))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    recorder = Recorder()
    puller = None
    try:
        wait_for(
            lambda: (hls / "live.m3u8").is_file() and (hls / "live.m3u8").read_text().count(".ts") >= 2,
            30,
            f"hlssink2 to write a playlist with two segments ({segmenter.poll()=})",
        )
        url = f"http://127.0.0.1:{server.server_address[1]}/live.m3u8"
        puller = CameraPuller(CameraEntry(camera_id="hls-1", stream_url=url), recorder.packet, recorder.status, PATIENT)
        puller.start()
        wait_for(lambda: len(recorder.packets) >= 60, 60, "60 packets from the HLS playlist")
    finally:
        if puller is not None:
            puller.stop()
            puller.join(10)
        server.shutdown()
        segmenter.terminate()
        segmenter.wait(10)
    assert CameraState.ONLINE in recorder.states()
    packets = [p for p in recorder.packets if p.session_id == recorder.packets[0].session_id]
    assert packets[0].is_keyframe and packets[0].codec == "h264" and (packets[0].width, packets[0].height) == (640, 360)
    assert [p.sequence for p in packets] == list(range(len(packets)))
    assert all(
        b.dts_us > a.dts_us
        for a, b in zip(packets, packets[1:], strict=False)
        if a.dts_us is not None and b.dts_us is not None
    )
    decoder = CameraDecoder(
        "hls-1", FrameSamplerConfig.model_validate({"sampling": {"mode": "keyframes", "heartbeat_s": 0.001}})
    )
    frames = []
    for p in packets:
        frames += (
            decoder.process(
                EncodedPacket(
                    "hls-1",
                    p.codec or "h264",
                    p.extradata,
                    (p.time_base_num or 1, p.time_base_den or 90_000),
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
    keyframes = sum(p.is_keyframe for p in packets)
    assert keyframes >= 3 and len(frames) == keyframes, (keyframes, len(frames), decoder.counters.as_dict())
    assert (frames[0].source_width, frames[0].source_height) == (640, 360)
