"""Shared by the clip-writer tests: the real sample clip as ingest publishes it, stamped as if live."""

from __future__ import annotations

import io
from pathlib import Path

import av

from libs.cameras import CameraEntry
from services.ingest.core import CameraPuller, PacketRecord, PullSettings

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-h264.mp4"  # 79.5 s, 10 fps, a keyframe every second (GOP 1 s)
GOP_US = 1_000_000


def sample_packets(camera_id: str, start_us: int) -> list[PacketRecord]:
    """One pass over the sample through the ingest core; capture times as if it had played live from
    start_us (a file read at full speed would otherwise stamp all of it within a second)."""
    packets: list[PacketRecord] = []
    entry = CameraEntry(camera_id=camera_id, stream_url=f"file://{SAMPLE}", realtime=False)
    CameraPuller(entry, packets.append, lambda _status: None, PullSettings()).run()
    assert len(packets) == 795
    origin = packets[0].pts_us or 0
    for packet in packets:
        packet.capture_time = start_us + (packet.pts_us or 0) - origin
    return packets


def probe_mp4(data: bytes) -> dict:
    """Decode a stored clip completely with PyAV: frame count, first frame type, duration."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        duration_s = float(stream.duration * stream.time_base) if stream.duration else float(container.duration) / 1e6
        return {
            "frames": len(frames),
            "first_is_keyframe": frames[0].key_frame,
            "duration_s": duration_s,
            "codec": stream.codec_context.name,
            "width": stream.codec_context.width,
        }
