"""The share gateway's pure parts on the real sample clip: HLS segments cut at keyframes and decodable on
their own, discontinuities on a new camera session, the sliding playlist, tokens, states and refusals,
and viewing sessions (audited once per viewer)."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import av
import pytest

from libs.shares import ShareBook, ShareTokens, ended, expiry_audit_id, new_share, status_of
from services.share_gateway.core import UnmaskedPolicy, ViewerSessions, partitions_of, refusal, releasable
from services.share_gateway.hls import HlsStream, Packet, SegmentError, mux_ts
from tests.clip_helpers import sample_packets

START_US = 1_800_000_000_000_000


@pytest.fixture(scope="module")
def packets() -> list[Packet]:
    return [Packet.of(p.as_record()) for p in sample_packets("core-cam", START_US)[:80]]


def frames_of(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data)) as container:
        return list(container.decode(video=0))


def test_segments_start_at_keyframes_and_decode_on_their_own(packets: list[Packet]) -> None:
    stream = HlsStream(target_s=1.0, window=3)
    cut = [s for p in packets if (s := stream.feed(p)) is not None]
    assert len(cut) == 7  # 80 packets at 10 fps with a keyframe every second: 7 whole seconds cut
    for segment in cut:
        frames = frames_of(segment.data)
        assert len(frames) == 10 and frames[0].key_frame and segment.duration_s == pytest.approx(1.0)
        assert segment.first_capture_us == START_US + segment.index * 1_000_000
    playlist = stream.playlist()
    assert playlist is not None
    lines = playlist.splitlines()
    assert lines[:4] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:4"]
    assert [line for line in lines if line.endswith(".ts")] == ["4.ts", "5.ts", "6.ts"]
    assert "#EXT-X-ENDLIST" not in playlist  # live: it grows
    # Kept one window longer than listed (a slow player may still fetch them), then dropped.
    assert stream.segment(1) is not None and stream.segment(0) is None and stream.segment(7) is None


def test_a_stream_joined_mid_gop_waits_for_a_keyframe(packets: list[Packet]) -> None:
    stream = HlsStream(target_s=1.0)
    for packet in packets[3:25]:
        stream.feed(packet)
    assert stream.refused == 7 and stream.playlist() is not None  # 7 packets before the first keyframe


def test_a_new_camera_session_starts_a_segment_marked_discontinuous(packets: list[Packet]) -> None:
    stream = HlsStream(target_s=1.0)
    for packet in packets[:25]:
        stream.feed(packet)
    reconnected = [
        Packet(
            p.data,
            p.pts_us,
            p.dts_us,
            p.duration_us,
            p.is_keyframe,
            p.capture_us,
            "session-2",
            p.codec,
            p.extradata,
            p.width,
            p.height,
        )  # fmt: skip
        for p in packets[:25]
    ]
    for packet in reconnected:
        stream.feed(packet)
    playlist = stream.playlist() or ""
    assert playlist.count("#EXT-X-DISCONTINUITY") == 1
    # The reconnected camera starts its timestamps again; the stream's keep growing (players stall on
    # time going backwards).
    starts = [frames_of(segment.data)[0].time for i in range(5) if (segment := stream.segment(i))]
    assert starts == sorted(starts) and starts[3] == pytest.approx(2.5, abs=0.01)  # 2.0-2.4 + 0.1 s
    assert playlist.split("#EXT-X-DISCONTINUITY")[1].splitlines()[2] == "3.ts"  # the first of the new session


def test_a_segment_without_a_decodable_start_is_refused(packets: list[Packet]) -> None:
    with pytest.raises(SegmentError, match="keyframe carrying codec"):
        mux_ts(packets[1], packets[1:5])


def test_tokens_sign_the_share_id_and_refuse_forgeries() -> None:
    tokens = ShareTokens("k" * 40)
    token = tokens.token("share-1")
    assert tokens.share_id(token) == "share-1"
    assert tokens.share_id(token[:-2] + "xx") is None
    assert ShareTokens("j" * 40).share_id(token) is None
    with pytest.raises(ValueError, match="shorter than 32"):
        ShareTokens("short")


def test_share_states_and_what_the_link_answers() -> None:
    share = new_share("cam", "police", " 112 call ", created_by="lee", lifetime_s=60, masked=True, now_ms=1_000)
    assert share["purpose"] == "112 call" and share["expires_at"] == 61_000
    assert status_of(share, 60_999) == "live" and refusal("live", share) is None
    assert status_of(share, 61_000) == "expired"
    assert refusal("expired", share) == (410, refusal("expired", share)[1])  # type: ignore[index]
    revoked = ended(share, "REVOKED", "lee", 5_000)
    assert status_of(revoked, 5_001) == "revoked" and "revoked" in refusal("revoked", revoked)[1]  # type: ignore[index]
    assert refusal("unknown", None)[0] == 403  # type: ignore[index]
    with pytest.raises(ValueError, match="purpose"):
        new_share("cam", "police", "  ", created_by="lee", lifetime_s=60, masked=True)
    book = ShareBook()
    book.apply(share["share_id"], share)
    assert book.expired_unrecorded(61_000) == [share] and book.live(1_000) == [share]
    book.apply(share["share_id"], ended(share, "EXPIRED", "gw", 61_000))
    assert book.expired_unrecorded(62_000) == [] and book.live(1_000) == []
    assert expiry_audit_id("a") == expiry_audit_id("a") != expiry_audit_id("b")


def test_a_viewer_opens_one_session_until_idle() -> None:
    sessions = ViewerSessions(idle_s=60)
    assert sessions.seen("s", "10.0.0.1", 0)
    assert not sessions.seen("s", "10.0.0.1", 30)
    assert not sessions.seen("s", "10.0.0.1", 89)  # each request keeps it open
    assert sessions.seen("s", "10.0.0.2", 90)  # another viewer
    assert sessions.seen("s", "10.0.0.1", 150)  # back after a minute idle: a new session


def test_the_gateway_refuses_to_start_without_a_share_key() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CCTV_")} | {"CCTV_HTTP__PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "services.share_gateway.main"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "CCTV_SHARE_KEY" in result.stderr and "secrets.token_urlsafe" in result.stderr


def test_an_unmasked_share_plays_only_while_the_routing_file_allows_its_agency(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes: []\nendpoints:\n  police: {unmasked: true}\n  fire: {}\n")
    policy = UnmaskedPolicy(routes)
    unmasked = new_share("cam-1", "police", "case 7", created_by="op", lifetime_s=60, masked=False)
    masked = new_share("cam-1", "fire", "case 7", created_by="op", lifetime_s=60, masked=True)
    assert releasable(unmasked, policy) and releasable(masked, policy)
    assert not releasable(unmasked | {"agency": "fire"}, policy) and not policy("unknown-agency")
    # The entry changes (e.g. a ConfigMap update): the share already handed out stops playing unmasked.
    routes.write_text("routes: []\nendpoints:\n  police: {unmasked: false}\n  fire: {}\n")
    os.utime(routes, (1, 2_000_000_000))
    assert not releasable(unmasked, policy) and releasable(masked, policy)
    assert UnmaskedPolicy(None)("anyone")  # no file given: the console's check at creation stands


def test_the_gateway_refuses_to_start_with_a_routing_file_it_cannot_read(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CCTV_")} | {
        "CCTV_HTTP__PORT": "0",
        "CCTV_SHARE_KEY": "k" * 40,
        "CCTV_ROUTES_FILE": str(tmp_path / "missing.yaml"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.share_gateway.main"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "missing.yaml" in result.stderr


def test_the_partitions_read_are_those_the_producers_put_the_shared_cameras_in() -> None:
    cameras = frozenset({"cam-a", "cam-b", "cam-c"})
    assert partitions_of(cameras, 12) == {zlib.crc32(c.encode()) % 12 for c in cameras}
    assert partitions_of(frozenset(), 12) == frozenset()
