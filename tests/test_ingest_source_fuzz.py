"""Bad camera sources (issue 20, item 3): random bytes, truncated and corrupted H.264, and a real HTTP
server that stalls mid-stream. Each ends in a status record with a clear reason, never an escaped
exception or a dead puller, and never stalls another camera."""

from __future__ import annotations

import io
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from libs.cameras import CameraEntry
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
FAST = PullSettings(open_timeout_s=3, read_timeout_s=2, backoff_initial_s=0.1, backoff_max_s=0.5)


class Recorder:
    def __init__(self) -> None:
        self.packets: dict[str, int] = {}
        self.statuses: list[StatusChange] = []
        self.lock = threading.Lock()

    def packet(self, record: PacketRecord) -> None:
        with self.lock:
            self.packets[record.camera_id] = self.packets.get(record.camera_id, 0) + 1

    def status(self, change: StatusChange) -> None:
        with self.lock:
            self.statuses.append(change)

    def of(self, camera_id: str) -> list[StatusChange]:
        with self.lock:
            return [s for s in self.statuses if s.camera_id == camera_id]

    def count(self, camera_id: str) -> int:
        with self.lock:
            return self.packets.get(camera_id, 0)


@pytest.fixture(scope="module")
def transport_stream() -> bytes:
    """The sample clip remuxed to MPEG-TS (streamable: no index at the end), as cameras serve over HTTP."""
    out = io.BytesIO()
    with av.open(str(SAMPLE)) as source, av.open(out, "w", format="mpegts") as target:
        video = source.streams.video[0]
        stream = target.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    return out.getvalue()


def _bad_files(tmp_path: Path, ts: bytes) -> dict[str, bytes]:
    rng = random.Random(20)
    cases = {f"random-{size}": rng.randbytes(size) for size in (1, 188, 4096, 200_000)}
    cases["empty"] = b""
    cases["ts-sync-then-noise"] = b"\x47" + rng.randbytes(188 * 50)
    for fraction in (0.01, 0.3, 0.7):
        cases[f"truncated-{int(fraction * 100)}pct"] = ts[: int(len(ts) * fraction)]
    corrupted = bytearray(ts)
    for _ in range(400):
        start = rng.randrange(len(corrupted) - 64)
        corrupted[start : start + 64] = rng.randbytes(64)
    cases["corrupted-h264"] = bytes(corrupted)
    mp4 = SAMPLE.read_bytes()
    cases["mp4-cut-before-index"] = mp4[: len(mp4) // 2]
    return cases


def test_bad_files_end_in_a_status_record_never_a_crash(tmp_path: Path, transport_stream: bytes) -> None:
    cases = _bad_files(tmp_path, transport_stream)
    recorder = Recorder()
    pullers = []
    for name, data in cases.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        entry = CameraEntry(camera_id=name, stream_url=f"file://{path}", loop=False, realtime=False)
        pullers.append(CameraPuller(entry, recorder.packet, recorder.status, FAST).start())

    def settled(name: str) -> bool:
        states = [s.state for s in recorder.of(name)]
        return CameraState.STOPPED in states or states.count(CameraState.FAILED) >= 2

    try:
        wait_for(lambda: all(settled(name) for name in cases), 90, "every bad file settled")
        for puller in pullers:
            assert puller.alive or puller.join(0), "a puller thread died without its final status"
    finally:
        for puller in pullers:
            puller.stop()
        for puller in pullers:
            assert puller.join(10)
    outcomes = {}
    for name in cases:
        statuses = recorder.of(name)
        assert statuses[-1].state == CameraState.STOPPED, (name, statuses[-1])
        failures = [s.reason for s in statuses if s.state == CameraState.FAILED]
        assert all(reason and "Traceback" not in reason for reason in failures), (name, failures)
        outcomes[name] = failures[0].split(";")[0] if failures else statuses[-1].reason
    # Pure noise is never mistaken for video; the truncated/corrupted clips give what they hold.
    for name in ("random-1", "random-188", "random-4096", "empty", "ts-sync-then-noise"):
        assert recorder.count(name) == 0 and "invalid data" in outcomes[name], (name, outcomes[name])
    # FFmpeg's probe reads 200 kB of noise as "bin" text art: refused as not a camera codec, not forwarded.
    assert recorder.count("random-200000") == 0 and "not a camera video codec" in outcomes["random-200000"]
    assert recorder.count("truncated-70pct") > recorder.count("truncated-30pct") > 0
    assert recorder.count("corrupted-h264") > 0
    print(f"\n{len(cases)} bad sources: " + "; ".join(f"{k}: {v}" for k, v in outcomes.items()))


@pytest.fixture
def stalling_server(transport_stream: bytes) -> Iterator[tuple[str, threading.Event]]:
    """A real HTTP server that sends 40 % of the stream, then holds the connection open silently."""
    release = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    head = transport_stream[: int(len(transport_stream) * 0.4)]

    def serve() -> None:
        while not release.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    def answer(connection: socket.socket) -> None:
        with connection:
            connection.recv(4096)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: video/MP2T\r\n"
                + f"Content-Length: {len(transport_stream)}\r\n\r\n".encode()
                + head
            )
            release.wait()  # stall mid-stream until the test ends

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/live.ts", release
    release.set()
    listener.close()
    thread.join(5)


def test_a_server_stalling_mid_stream_is_reported_and_stalls_no_other_camera(
    stalling_server: tuple[str, threading.Event],
) -> None:
    url, _release = stalling_server
    recorder = Recorder()
    stalled = CameraPuller(
        CameraEntry(camera_id="stalls", stream_url=url), recorder.packet, recorder.status, FAST
    ).start()
    healthy = CameraPuller(
        CameraEntry(camera_id="healthy", stream_url=f"file://{SAMPLE}", loop=True, realtime=True),
        recorder.packet,
        recorder.status,
        FAST,
    ).start()
    try:

        def stalls() -> list[StatusChange]:  # reconnects after a failure carry its reason
            return [s for s in recorder.of("stalls") if s.state == CameraState.RECONNECTING and s.reason]

        wait_for(lambda: stalls(), 60, "the stalled camera reported")
        before = recorder.count("healthy")
        # While the stalled camera waits out its timeout again, the other keeps delivering in real time.
        wait_for(lambda: len(stalls()) >= 2, 60, "a second stall")
        assert recorder.count("healthy") > before + 10
    finally:
        for puller in (stalled, healthy):
            puller.stop()
        assert stalled.join(10) and healthy.join(10)
    reasons = {
        s.reason.split(";")[0] for s in recorder.of("stalls") if s.state == CameraState.RECONNECTING and s.reason
    }
    assert reasons == {"no data for 2 s (timeout)"}, reasons
    assert recorder.count("stalls") > 0  # it did deliver the part it received
