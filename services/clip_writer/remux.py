"""Segment → MP4 without re-encoding (PyAV): the packets are copied bit for bit into the container."""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import av

from services.clip_writer.core import ClipError, Segment

MICROS = Fraction(1, 1_000_000)


def remux_mp4(segment: Segment) -> bytes:
    """The segment as a fragment-free MP4 (moov at the front, so players start before the download ends)."""
    header = segment.header
    if not header.codec or not header.width or not header.height:
        raise ClipError(f"segment {segment.index} starts without codec, width and height")
    # A real file, not memory: faststart rewrites the file to move the index to the front.
    with tempfile.TemporaryDirectory(prefix="clip-") as directory:
        path = Path(directory) / "segment.mp4"
        _write(segment, str(path))
        return path.read_bytes()


def _write(segment: Segment, path: str) -> None:
    header = segment.header
    container = av.open(path, "w", format="mp4", options={"movflags": "+faststart"})
    try:
        try:
            stream = container.add_stream(header.codec or "")
        except (ValueError, av.FFmpegError) as error:
            raise ClipError(f"codec {header.codec!r} cannot be muxed by this PyAV build: {error}") from error
        if not isinstance(stream, av.VideoStream):
            raise ClipError(f"codec {header.codec!r} is not a video codec")
        if header.width is None or header.height is None:
            raise ClipError("the camera's keyframe carries no frame size: cannot write an MP4 header")
        stream.width, stream.height, stream.time_base = header.width, header.height, MICROS
        # PyAV streams made by add_stream() carry an encoder context that it opens before writing the
        # header, and opening replaces the extradata. Open it first, then put back the camera's own
        # header (e.g. avcC), so the muxer copies the packets as they are.
        stream.codec_context.open()
        if header.extradata:
            stream.codec_context.extradata = header.extradata
        # One origin for pts and dts keeps their order (B-frames: pts >= dts).
        origin = header.dts_us if header.dts_us is not None else header.media_time_us
        for index, packet in enumerate(segment.packets):
            out = av.Packet(packet.data)
            out.pts = packet.media_time_us - origin
            out.dts = (packet.dts_us - origin) if packet.dts_us is not None else out.pts
            out.duration = packet.duration_us or _gap_to_next(segment, index)
            out.time_base = MICROS
            out.is_keyframe = packet.is_keyframe
            out.stream = stream
            container.mux(out)
    finally:
        container.close()


def _gap_to_next(segment: Segment, index: int) -> int:
    """A packet without a duration lasts until the next one (the last one as long as the one before)."""
    packets = segment.packets
    if index + 1 < len(packets):
        return max(0, packets[index + 1].media_time_us - packets[index].media_time_us)
    if index > 0:
        return max(0, packets[index].media_time_us - packets[index - 1].media_time_us)
    return 0


def frame_jpeg(mp4: bytes, offset_s: float, quality: int = 90) -> bytes:
    """The frame shown `offset_s` into a stored clip, as JPEG: the alert's snapshot frame stays
    retrievable from the clip after cctv.frames.v1 has dropped it (minutes of retention)."""
    import io

    with av.open(io.BytesIO(mp4), "r") as container:
        stream = container.streams.video[0]
        chosen = None
        for frame in container.decode(stream):
            if chosen is not None and frame.time is not None and frame.time > offset_s:
                break
            chosen = frame
        if chosen is None:
            raise ClipError("the clip has no decodable frame")
        buffer = io.BytesIO()
        chosen.to_image().save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()
