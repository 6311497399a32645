"""Masked re-encoding of video for anything that leaves the centre (evidence exports, live shares):
decoded frames (PyAV VideoFrame) in -> faces, heads of people and plates pixelated (libs/masking.py) ->
H.264 packets (libx264) out, with the input's timestamps and a keyframe wherever the input had one and at
least every `keyframe_interval_s`, so the output can be cut into segments at the same points.

Detection is the expensive part (docs/benchmarks/masking.md), so it runs on every `detect_every`-th frame
only. The frames in between are held back until the next detection and masked with the regions of both
detections around them plus, for each region, its hull with its partner in the other detection: a face
moving from A to B passes through the hull of A and B, so it is never left bare on an in-between frame.
The price is a delay of `detect_every - 1` frames (0.2 s at 10 fps and k=3) for live video.

    encoder = MaskedVideoEncoder.for_stream(in_stream, VideoMaskingSettings(), FaceDetector(), people=...)
    for frame in container.decode(in_stream):
        for packet in encoder.push(frame): ...   # av.Packet, pts/dts in encoder.time_base
    for packet in encoder.flush(): ...
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from libs.masking import FaceDetector, PlateDetector, Region, head_regions, pixelate, vehicle_regions

# Objects seen in an RGB frame, as an Alert's objects: {"class_name", "x1", "y1", "x2", "y2"} normalised.
ObjectsSource = Callable[[np.ndarray], list[dict]]


class VideoMaskingSettings(BaseModel):
    """How released video is masked and re-encoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detect_every: int = Field(
        default=3, ge=1, le=30, description="run the detectors on every k-th frame; frames between are carried"
    )
    face_grow: float = Field(
        default=1.5, ge=1.0, le=4.0, description="face boxes are scaled by this about their centre"
    )
    head_grow: float = Field(default=1.2, ge=1.0, le=4.0, description="head boxes (top of person boxes) likewise")
    carry_grow: float = Field(
        default=1.5, ge=1.0, le=4.0, description="regions on frames between detections are scaled by this (movement)"
    )
    linger: int = Field(
        default=2,
        ge=1,
        le=10,
        description="a region stays masked for this many detections (a detector missing a head once leaks nothing)",
    )
    keyframe_interval_s: float = Field(
        default=2.0, gt=0, le=60, description="longest time between keyframes (input keyframes are kept too)"
    )
    crf: int = Field(default=26, ge=0, le=51, description="x264 constant rate factor: lower is better and bigger")
    preset: str = Field(default="veryfast", description="x264 preset (speed against size)")
    encoder_threads: int = Field(default=1, ge=0, le=64, description="x264 threads; 0 = one per core")
    pixel_blocks: int = Field(default=6, ge=1, le=32, description="cells per side a masked region is reduced to")
    min_cell_px: int = Field(
        default=8, ge=1, le=64, description="cells are at least this big: a small head keeps no features"
    )


@dataclass
class MaskingStats:
    """What masking cost and found, for metrics and the benchmark."""

    frames: int = 0
    detections: int = 0
    detect_s: float = 0.0
    mask_encode_s: float = 0.0
    regions: int = 0  # masked regions summed over frames (a counter: the encoder may run for days)

    @property
    def ms_per_frame(self) -> float:
        return 1000 * (self.detect_s + self.mask_encode_s) / max(1, self.frames)


def _hull(a: Region, b: Region) -> Region:
    return Region(min(a.x1, b.x1), min(a.y1, b.y1), max(a.x2, b.x2), max(a.y2, b.y2), max(a.score, b.score))


def _partner(region: Region, candidates: list[Region]) -> Region | None:
    """The candidate that is most plausibly the same face/head a few frames later: the nearest centre
    within three box sizes (people move well under that in a few frames)."""
    cx, cy = (region.x1 + region.x2) / 2, (region.y1 + region.y2) / 2
    reach = 3 * max(region.x2 - region.x1, region.y2 - region.y1)
    best, best_distance = None, float(reach)
    for other in candidates:
        distance = float(np.hypot((other.x1 + other.x2) / 2 - cx, (other.y1 + other.y2) / 2 - cy))
        if distance <= best_distance:
            best, best_distance = other, distance
    return best


def carried_regions(before: list[Region], after: list[Region]) -> list[Region]:
    """Regions for the frames between two detections: all of both, and each region's hull with its partner
    in the other detection (where a moving face is in between)."""
    hulls = [_hull(a, b) for a in before if (b := _partner(a, after)) is not None]
    hulls += [_hull(b, a) for b in after if (a := _partner(b, before)) is not None]
    return [*before, *after, *hulls]


@dataclass
class _Held:
    frame: av.VideoFrame
    pts: int
    rgb: np.ndarray
    force_keyframe: bool


class MaskedVideoEncoder:
    """One camera's masked H.264 encoder. Feed frames in order; packets come out (delayed by up to
    `detect_every - 1` frames). Not thread-safe; one per stream."""

    def __init__(
        self,
        width: int,
        height: int,
        time_base: Fraction,
        settings: VideoMaskingSettings,
        faces: FaceDetector,
        people: ObjectsSource | None = None,
        plates: PlateDetector | None = None,
        frame_rate: Fraction | None = None,
        observe: Callable[[int, list[Region]], None] | None = None,
    ) -> None:
        """`observe(pts, regions)` is told what was masked on each frame (metrics, tests)."""
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"H.264 (yuv420p) needs a positive even frame size, got {width}x{height}")
        self.settings, self.faces, self.people, self.plates = settings, faces, people, plates
        self.observe = observe
        self.width, self.height, self.time_base = width, height, time_base
        self.context = av.CodecContext.create("libx264", "w")
        self.context.width, self.context.height = width, height
        self.context.pix_fmt = "yuv420p"
        self.context.time_base = time_base
        if frame_rate:
            self.context.framerate = frame_rate
        self.context.thread_count = settings.encoder_threads
        # No B-frames: dts == pts, no reordering delay for live video. Keyframes only where we force them
        # (input keyframes and the interval), so segment boundaries stay where the original had them.
        self.context.options = {
            "preset": settings.preset,
            "crf": str(settings.crf),
            "bf": "0",
            "x264-params": "scenecut=0:keyint=100000:min-keyint=1",
            "forced-idr": "1",
        }
        self.context.open()
        self.stats = MaskingStats()
        self._held: list[_Held] = []
        self._last_detected: list[Region] | None = None
        self._older: deque[list[Region]] = deque(maxlen=max(0, settings.linger - 1))
        self._last_key_time: float | None = None
        self._durations: dict[int, int] = {}

    @classmethod
    def for_stream(
        cls,
        stream: av.VideoStream,
        settings: VideoMaskingSettings,
        faces: FaceDetector,
        people: ObjectsSource | None = None,
        plates: PlateDetector | None = None,
        observe: Callable[[int, list[Region]], None] | None = None,
    ) -> MaskedVideoEncoder:
        """An encoder matching a decoded input stream (size, time base, frame rate)."""
        context = stream.codec_context
        if stream.time_base is None:
            raise ValueError("the input stream has no time base")
        return cls(
            context.width,
            context.height,
            stream.time_base,
            settings,
            faces,
            people,
            plates,
            stream.average_rate,
            observe,
        )

    @property
    def extradata(self) -> bytes | None:
        """The encoder's avcC header (SPS/PPS), for a container's stream."""
        return self.context.extradata

    def detect(self, rgb: np.ndarray) -> list[Region]:
        """Everything to hide in one frame: faces (grown), heads of people, plates inside vehicles."""
        height, width = rgb.shape[:2]
        regions = [face.grown(self.settings.face_grow, width, height) for face in self.faces.detect(rgb)]
        if self.people is not None:
            objects = self.people(rgb)
            regions += [
                head.grown(self.settings.head_grow, width, height) for head in head_regions(objects, width, height)
            ]
            if self.plates is not None:
                regions += self.plates.detect(rgb, vehicle_regions(objects, width, height))
        return regions

    def push(self, frame: av.VideoFrame) -> list[av.Packet]:
        if frame.width != self.width or frame.height != self.height:
            raise ValueError(
                f"frame is {frame.width}x{frame.height}, the encoder was opened for {self.width}x{self.height}"
            )
        if frame.pts is None:
            raise ValueError("frame without a timestamp: the masked copy must keep the original's timing")
        held = _Held(
            frame, frame.pts, frame.to_ndarray(format="rgb24"), self._needs_keyframe(frame.pts, frame.key_frame)
        )
        self._held.append(held)
        if self._last_detected is None or len(self._held) >= self.settings.detect_every:
            return self._release()
        return []

    def flush(self) -> list[av.Packet]:
        """Mask and encode what is held (detecting on the last frame), then drain the encoder."""
        packets = self._release() if self._held else []
        return packets + self._timed(list(self.context.encode(None)))

    def _needs_keyframe(self, pts: int, key_frame: bool) -> bool:
        when = float(pts * self.time_base)
        if key_frame or self._last_key_time is None or when - self._last_key_time >= self.settings.keyframe_interval_s:
            self._last_key_time = when
            return True
        return False

    def _release(self) -> list[av.Packet]:
        """Detect on the newest held frame; mask the older ones with regions carried from both sides."""
        newest = self._held[-1]
        started = time.perf_counter()
        detected = self.detect(newest.rgb)
        self.stats.detect_s += time.perf_counter() - started
        self.stats.detections += 1
        # Regions linger for `linger` detections: a head the detector misses once is still covered.
        lingering = [region for regions in self._older for region in regions]
        height, width = newest.rgb.shape[:2]
        between = [
            region.grown(self.settings.carry_grow, width, height)
            for region in carried_regions(self._last_detected or [], detected) + lingering
        ]
        newest_regions = [*detected, *(self._last_detected or []), *lingering]
        packets: list[av.Packet] = []
        started = time.perf_counter()
        for position, held in enumerate(self._held):
            regions = newest_regions if position == len(self._held) - 1 else between
            packets += self._encode(held, regions)
        self.stats.mask_encode_s += time.perf_counter() - started
        if self._last_detected is not None and self._older.maxlen:
            self._older.append(self._last_detected)
        self._held, self._last_detected = [], detected
        return packets

    def _encode(self, held: _Held, regions: list[Region]) -> list[av.Packet]:
        masked = held.rgb
        for region in regions:
            side = min(region.x2 - region.x1, region.y2 - region.y1)
            blocks = max(1, min(self.settings.pixel_blocks, side // self.settings.min_cell_px))
            masked = pixelate(masked, [region], blocks)
        out = av.VideoFrame.from_ndarray(masked, format="rgb24").reformat(format="yuv420p")
        out.pts, out.time_base = held.pts, self.time_base
        out.pict_type = av.video.frame.PictureType.I if held.force_keyframe else av.video.frame.PictureType.NONE
        self.stats.frames += 1
        self.stats.regions += len(regions)
        if self.observe is not None:
            self.observe(held.pts, regions)
        if held.frame.duration:
            self._durations[held.pts] = held.frame.duration
        return self._timed(self.context.encode(out))

    def _timed(self, packets: list[av.Packet]) -> list[av.Packet]:
        """Packets with the input frame's duration (x264 leaves it out; the MP4 muxer would then guess
        the last frame's length and shorten the clip)."""
        for packet in packets:
            duration = self._durations.pop(packet.pts, None) if packet.pts is not None else None
            if duration and not packet.duration:
                packet.duration = duration
        return packets


def model_people(threads: int = 1, input_size: int = 512, min_score: float = 0.3) -> ObjectsSource:
    """People and vehicles from the detector's shipped model (models/centernet-mobilenetv3-coco.onnx),
    for video without Detections at hand (e.g. an evidence clip whose frames were never sampled). The
    score floor is lower than an alert's: a head masked by mistake costs little, one missed is a leak."""
    # Imported here: only callers without Detections pay for loading the detector.
    from services.detector.config import DetectorModelConfig
    from services.detector.detector import Detector

    detector = Detector(
        DetectorModelConfig(
            intra_op_threads=threads, preprocess_threads=1, input_size=input_size, providers=["CPUExecutionProvider"]
        )
    )

    def objects(rgb: np.ndarray) -> list[dict]:
        (found,) = detector.detect([rgb])
        return [
            {"class_name": o.class_name, "x1": o.x1, "y1": o.y1, "x2": o.x2, "y2": o.y2, "score": o.score}
            for o in found
            if o.score >= min_score
        ]

    return objects


def mask_mp4(
    data: bytes,
    settings: VideoMaskingSettings,
    faces: FaceDetector,
    people: ObjectsSource | None = None,
    plates: PlateDetector | None = None,
    observe: Callable[[int, list[Region]], None] | None = None,
) -> tuple[bytes, MaskingStats]:
    """A masked copy of an MP4 clip (first video stream; audio is dropped, it is not masked): same
    timestamps, a keyframe wherever the original had one. Raises ValueError on data that is not video."""
    import io
    import tempfile
    from pathlib import Path

    try:
        source = av.open(io.BytesIO(data), "r")
    except av.FFmpegError as error:
        raise ValueError(f"the clip is not a readable video: {error}") from error
    with source, tempfile.TemporaryDirectory(prefix="masked-") as directory:
        if not source.streams.video:
            raise ValueError("the clip has no video stream")
        in_stream = source.streams.video[0]
        encoder = MaskedVideoEncoder.for_stream(in_stream, settings, faces, people, plates, observe)
        path = Path(directory) / "masked.mp4"
        # A real file: faststart rewrites it to put the index first (players start before the download ends).
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as target:
            out_stream = target.add_stream("h264")
            out_stream.width, out_stream.height = encoder.width, encoder.height
            out_stream.time_base = encoder.time_base
            # As in services/clip_writer/remux.py: open the stream's own context, then give it our
            # encoder's header, so the muxer writes the avcC that matches the packets.
            out_stream.codec_context.open()
            out_stream.codec_context.extradata = encoder.extradata

            def write(packets: list[av.Packet]) -> None:
                for packet in packets:
                    packet.stream = out_stream
                    target.mux(packet)

            try:
                for frame in source.decode(in_stream):
                    write(encoder.push(frame))
            except av.FFmpegError as error:
                raise ValueError(f"the clip could not be decoded: {error}") from error
            write(encoder.flush())
        return path.read_bytes(), encoder.stats
