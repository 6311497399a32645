"""A camera's packets → a live HLS stream (MPEG-TS segments + a sliding playlist), with PyAV and without
re-encoding: every packet is copied bit for bit (the muxer only rewrites H.264's length prefixes to start
codes). Knows nothing of Kafka or HTTP: packets in, segments and playlist text out.

Segments are cut at the first keyframe after `target_s`, so each one starts decodable (a player may join
at any segment). A new ingest session (camera reconnected) or a timestamp jump starts a new segment
marked #EXT-X-DISCONTINUITY, so players reset their clock instead of stalling.
"""

from __future__ import annotations

import io
import math
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import av

MICROS = Fraction(1, 1_000_000)
_MAX_JUMP_US = 5_000_000  # a larger gap between packets means the source restarted: a discontinuity
_FRAME_GAP_US = 40_000  # how long a frame without a duration is taken to last


class SegmentError(ValueError):
    pass


@dataclass(frozen=True)
class Packet:
    """One demuxed video packet (the fields of a VideoPacket record the remux needs)."""

    data: bytes
    pts_us: int
    dts_us: int
    duration_us: int | None
    is_keyframe: bool
    capture_us: int
    session_id: str
    codec: str | None = None
    extradata: bytes | None = None
    width: int | None = None
    height: int | None = None

    @classmethod
    def of(cls, record: dict[str, Any]) -> Packet:
        """From a VideoPacket record; a packet without pts is timed by its capture time."""
        pts = record.get("pts_us")
        pts = record["capture_time"] if pts is None else pts
        dts = record.get("dts_us")
        return cls(
            record["data"],
            pts,
            pts if dts is None else dts,
            record.get("duration_us"),
            record["is_keyframe"],
            record["capture_time"],
            record["session_id"],
            record.get("codec"),
            record.get("extradata"),
            record.get("width"),
            record.get("height"),
        )


@dataclass(frozen=True)
class Segment:
    index: int
    duration_s: float
    data: bytes
    discontinuity: bool
    first_capture_us: int  # when the segment's first frame was captured (glass-to-glass measurement)


def mux_ts(header: Packet, packets: list[Packet]) -> bytes:
    """Packets (the first a keyframe carrying codec, size and extradata) as one MPEG-TS segment."""
    if not header.codec or not header.width or not header.height:
        raise SegmentError("a segment must start with a keyframe carrying codec, width and height")
    buffer = io.BytesIO()
    container = av.open(buffer, "w", format="mpegts")
    try:
        try:
            stream = container.add_stream(header.codec)
        except (ValueError, av.FFmpegError) as error:
            raise SegmentError(f"codec {header.codec!r} cannot be muxed to MPEG-TS: {error}") from error
        if not isinstance(stream, av.VideoStream):
            raise SegmentError(f"codec {header.codec!r} is not a video codec")
        stream.width, stream.height, stream.time_base = header.width, header.height, MICROS
        # Opening the encoder context replaces the extradata: open first, then put the camera's own back
        # (see services/clip_writer/remux.py), so the packets are copied as they are.
        stream.codec_context.open()
        if header.extradata:
            stream.codec_context.extradata = header.extradata
        for index, packet in enumerate(packets):
            out = av.Packet(packet.data)
            out.pts, out.dts = packet.pts_us, packet.dts_us
            out.duration = packet.duration_us or _gap_after(packets, index)
            out.time_base = MICROS
            out.is_keyframe = packet.is_keyframe
            out.stream = stream
            container.mux(out)
    finally:
        container.close()
    return buffer.getvalue()


def _gap_after(packets: list[Packet], index: int) -> int:
    if index + 1 < len(packets):
        return max(0, packets[index + 1].pts_us - packets[index].pts_us)
    return max(0, packets[index].pts_us - packets[index - 1].pts_us) if index else 0


@dataclass
class HlsStream:
    """The live HLS window of one camera: feed packets in order, read the playlist and segments."""

    target_s: float = 1.0
    window: int = 6  # segments listed in the playlist (older ones stay fetchable one window longer)
    _segments: deque[Segment] = field(default_factory=deque)
    _pending: list[Packet] = field(default_factory=list)
    _header: Packet | None = None
    _next_index: int = 0
    _discontinuity: bool = False
    _last_in: Packet | None = None  # the last packet fed, as it came
    _offset_us: int = 0  # added to input timestamps since the last restart
    _end_out_us: int = -(2**62)  # the latest output timestamp
    _discontinuities: list[int] = field(default_factory=list)  # indexes of segments marked discontinuous
    _lock: threading.Lock = field(default_factory=threading.Lock)
    refused: int = 0  # packets dropped while waiting for a keyframe

    def feed(self, packet: Packet) -> Segment | None:
        """Adds a packet; returns the segment it completed, if any."""
        last = self._last_in
        restarted = last is not None and (
            packet.session_id != last.session_id
            or packet.dts_us <= last.dts_us - _MAX_JUMP_US
            or packet.dts_us > last.dts_us + _MAX_JUMP_US
        )
        completed = None
        if restarted:
            completed = self._cut()
            self._discontinuity = True
            # Timestamps keep growing across a restart (players stall on time going backwards): the new
            # stream continues where the old one ended.
            self._offset_us = self._end_out_us - packet.dts_us
        if not self._pending and not (packet.is_keyframe and packet.codec):
            self.refused += 1  # a segment can only start at a keyframe that says how to decode it
            self._last_in = packet
            return completed
        self._last_in = packet
        packet = replace(packet, pts_us=packet.pts_us + self._offset_us, dts_us=packet.dts_us + self._offset_us)
        if packet.is_keyframe and packet.codec:
            if self._pending and self._pending_s(packet) >= self.target_s:
                completed = self._cut()
            if not self._pending:
                self._header = packet
        self._pending.append(packet)
        self._end_out_us = max(self._end_out_us, packet.pts_us + (packet.duration_us or _FRAME_GAP_US))
        return completed

    def _pending_s(self, upcoming: Packet) -> float:
        return (upcoming.pts_us - self._pending[0].pts_us) / 1e6

    def _cut(self) -> Segment | None:
        packets, self._pending = self._pending, []
        if not packets or self._header is None:
            return None
        end = packets[-1].pts_us + (packets[-1].duration_us or _gap_after(packets, len(packets) - 1))
        segment = Segment(
            self._next_index,
            max(0.001, (end - packets[0].pts_us) / 1e6),
            mux_ts(self._header, packets),
            self._discontinuity,
            packets[0].capture_us,
        )
        if self._discontinuity:
            self._discontinuities = self._discontinuities[-100:] + [segment.index]
        self._discontinuity = False
        with self._lock:
            self._segments.append(segment)
            self._next_index += 1
            while len(self._segments) > 2 * self.window:
                self._segments.popleft()
        return segment

    def segment(self, index: int) -> Segment | None:
        with self._lock:
            return next((s for s in self._segments if s.index == index), None)

    def playlist(self, segment_url: str = "{index}.ts") -> str | None:
        """The live playlist (no #EXT-X-ENDLIST: it grows); None before the first segment."""
        with self._lock:
            listed = list(self._segments)[-self.window :]
        if not listed:
            return None
        target = max(1, math.ceil(max(s.duration_s for s in listed)))
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-MEDIA-SEQUENCE:{listed[0].index}",
        ]
        dropped = sum(1 for index in self._discontinuities if index < listed[0].index)
        if dropped:  # players number timelines by it once the marked segment has scrolled away
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{dropped}")
        for segment in listed:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines += [f"#EXTINF:{segment.duration_s:.3f},", segment_url.format(index=segment.index)]
        return "\n".join(lines) + "\n"
