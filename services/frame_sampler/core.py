"""Frame-sampler core: decode demuxed camera packets, pick frames, gate them on motion, encode JPEGs.

Pure logic, no Kafka. The service loop feeds `EncodedPacket`s (one camera's packets in order) to
`FrameSampler.process()` and publishes what comes back in `SamplerOutput`:

* `SampledFrame` - a JPEG of a chosen frame, with reason 'motion' (the camera is active) or
  'heartbeat' (a still scene, at most one every `heartbeat_interval_s`);
* `ActivityChange` - the camera went active or idle;
* `DecodeIssue` - something was wrong with the input (bad bytes, missing extradata, unknown codec);
  decoding resumes at the next keyframe, and the matching counter in `CameraDecoder.counters` grows.

Which frames are looked at is set by `SamplingConfig`: every keyframe, or the frame nearest each
1/N s tick of the presentation timestamps. When the wanted rate is not above the keyframe rate, only
keyframes are decoded: non-key packets never reach the decoder (and the decoder skips non-key
frames too), which is what makes the sampler cheap (a keyframe-only decode is ~25x faster).
"""

from __future__ import annotations

import math
from concurrent.futures import Executor, Future
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any, Generic, Literal, TypeVar

import av
import av.error
import numpy as np
import simplejpeg
from av.video.codeccontext import VideoCodecContext
from av.video.reformatter import ColorRange, VideoReformatter
from pydantic import BaseModel, ConfigDict, Field, model_validator

ActivityStateName = Literal["active", "idle"]
FrameReason = Literal["motion", "heartbeat"]
IssueKind = Literal["decode_error", "corrupt_frame", "missing_extradata", "unsupported_codec"]

MICROSECONDS = Fraction(1, 1_000_000)
ANNEX_B_START_CODES = (b"\x00\x00\x01", b"\x00\x00\x00\x01")
# Codecs whose MP4/RTSP form stores NAL units length-prefixed, with the parameter sets in extradata.
LENGTH_PREFIXED_CODECS = frozenset({"h264", "hevc"})
# A sampling period within this fraction of the keyframe interval still counts as "keyframes suffice"
# (RTSP timestamps jitter a little).
KEYFRAME_INTERVAL_TOLERANCE = 0.05
# AVCOL_RANGE_JPEG: the frame's levels span 0-255, as JPEG expects.
FULL_COLOR_RANGE = int(ColorRange.JPEG)


# --------------------------------------------------------------------------- configuration


class SamplingConfig(BaseModel):
    """Which decoded frames are considered: every keyframe, or the frame nearest each 1/fps tick.

    Also accepts the short forms `"keyframes"`, `"fps:2"` and `{"fps": 2}`. In keyframes mode a
    given fps is dropped (the camera inventory may carry one for a later switch to fps mode).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["keyframes", "fps"] = "keyframes"
    fps: float | None = Field(default=None, gt=0, le=120, description="frames per second when mode is 'fps'")

    @model_validator(mode="before")
    @classmethod
    def _accept_short_forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "keyframes":
                return {"mode": "keyframes"}
            if text.startswith("fps:"):
                return {"mode": "fps", "fps": text.removeprefix("fps:")}
            raise ValueError(f"sampling must be 'keyframes', 'fps:N' or {{'fps': N}}, got {value!r}")
        if isinstance(value, dict) and "fps" in value and "mode" not in value:
            return {**value, "mode": "fps"}
        return value

    @model_validator(mode="after")
    def _fps_matches_mode(self) -> SamplingConfig:
        if self.mode == "fps" and self.fps is None:
            raise ValueError("sampling mode 'fps' needs a rate, e.g. {'fps': 1}")
        if self.mode == "keyframes" and self.fps is not None:
            object.__setattr__(self, "fps", None)  # frozen model: normalise in place once, at validation
        return self


class MotionConfig(BaseModel):
    """Motion gating on a small grayscale copy of each considered frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analysis_width: int = Field(default=160, ge=32, le=1280, description="width of the grayscale copy, pixels")
    pixel_threshold: int = Field(
        default=12, ge=1, le=255, description="grey-level change (0-255) for a pixel to count as changed"
    )
    background_time_constant_s: float = Field(
        default=20.0, gt=0, description="how fast the background model absorbs slow changes (light, parked cars)"
    )
    activate_score: float = Field(
        default=0.003, ge=0, le=1, description="fraction of moving pixels that makes an idle camera active"
    )
    deactivate_score: float = Field(
        default=0.001, ge=0, le=1, description="fraction of moving pixels under which an active camera may go idle"
    )
    idle_hold_s: float = Field(
        default=3.0, ge=0, description="an active camera goes idle only after this long below deactivate_score"
    )
    heartbeat_interval_s: float = Field(
        default=30.0, gt=0, description="an idle camera emits one frame per this many seconds"
    )

    @model_validator(mode="after")
    def _hysteresis_is_ordered(self) -> MotionConfig:
        if self.deactivate_score > self.activate_score:
            raise ValueError(
                f"deactivate_score ({self.deactivate_score}) must not exceed activate_score ({self.activate_score})"
            )
        return self


class JpegConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quality: int = Field(default=80, ge=1, le=100)
    max_dimension: int = Field(default=1280, ge=16, le=8192, description="longest side of the JPEG, pixels")
    fast_dct: bool = Field(default=True, description="libjpeg-turbo's fast DCT: ~25% quicker, barely visible loss")


class FrameSamplerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sampling: SamplingConfig = SamplingConfig()
    motion: MotionConfig = MotionConfig()
    jpeg: JpegConfig = JpegConfig()
    decoder_threads: int = Field(
        default=1, ge=0, le=64, description="threads per camera decoder; 0 = FFmpeg's choice. 1 scales best"
    )


# --------------------------------------------------------------------------- data in / out


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One demuxed, still-encoded video packet of one camera, as the ingest service publishes it."""

    camera_id: str
    codec: str  # FFmpeg decoder name: "h264", "hevc", "mpeg4", "mjpeg", ...
    extradata: bytes | None  # codec configuration (avcC/hvcC for MP4/RTSP H.264/H.265), None if in-band
    time_base: tuple[int, int]  # the source stream's time base (num, den), kept for reference
    pts_us: int | None
    dts_us: int | None
    is_keyframe: bool
    data: bytes
    sequence: int  # per-session packet counter; a jump means packets were lost
    session_id: str  # changes when ingest reconnects to the camera
    capture_time_ms: int  # wall-clock time the packet was captured, ms since the epoch


@dataclass(frozen=True, slots=True)
class SampledFrame:
    camera_id: str
    session_id: str
    sequence: int
    pts_us: int | None
    capture_time_ms: int
    is_keyframe: bool
    width: int  # of the JPEG
    height: int
    source_width: int
    source_height: int
    jpeg: bytes
    motion_score: float
    reason: FrameReason


@dataclass(frozen=True, slots=True)
class ActivityState:
    state: ActivityStateName
    score: float
    since_ms: int | None  # capture time the camera entered this state (None: no frame seen yet)


@dataclass(frozen=True, slots=True)
class ActivityChange:
    camera_id: str
    state: ActivityStateName
    previous_state: ActivityStateName
    score: float
    since_ms: int  # capture time of the frame that caused the change
    sequence: int


@dataclass(frozen=True, slots=True)
class DecodeIssue:
    camera_id: str
    session_id: str
    sequence: int
    kind: IssueKind
    message: str


@dataclass(slots=True)
class SamplerOutput:
    frames: list[SampledFrame] = field(default_factory=list)
    activity_changes: list[ActivityChange] = field(default_factory=list)
    issues: list[DecodeIssue] = field(default_factory=list)
    # With a JPEG executor: (index in frames, encoding in progress); `finish()` fills them in.
    pending_jpegs: list[tuple[int, Future[tuple[bytes, int, int]]]] = field(default_factory=list)

    def extend(self, other: SamplerOutput) -> None:
        offset = len(self.frames)
        self.frames.extend(other.frames)
        self.activity_changes.extend(other.activity_changes)
        self.issues.extend(other.issues)
        self.pending_jpegs.extend((offset + index, future) for index, future in other.pending_jpegs)

    def finish(self) -> SamplerOutput:
        """Wait for JPEGs still being encoded and put them into their frames (a no-op without executor)."""
        for index, future in self.pending_jpegs:
            jpeg, width, height = future.result()
            self.frames[index] = replace(self.frames[index], jpeg=jpeg, width=width, height=height)
        self.pending_jpegs.clear()
        return self


@dataclass(slots=True)
class SamplerCounters:
    """Running totals for one camera (exported as metrics by the service loop)."""

    packets_received: int = 0
    packets_decoded: int = 0  # packets handed to the decoder
    non_key_packets_decoded: int = 0
    non_key_packets_skipped: int = 0  # dropped unseen on the keyframe-only fast path
    packets_skipped_awaiting_keyframe: int = 0
    frames_decoded: int = 0
    frames_analysed: int = 0  # chosen by the sampling policy and scored for motion
    frames_emitted: int = 0
    motion_frames_emitted: int = 0
    heartbeat_frames_emitted: int = 0
    activity_changes: int = 0
    decoder_resets: int = 0
    sequence_gaps: int = 0
    out_of_order_packets: int = 0
    session_changes: int = 0
    stream_changes: int = 0  # codec or extradata changed within a session
    packets_without_timestamp: int = 0
    decode_errors: int = 0
    corrupt_frames: int = 0
    missing_extradata_errors: int = 0
    unsupported_codec_packets: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FrameSamplerError(ValueError):
    """A packet was handed to the wrong camera's decoder (a bug in the caller, not bad video)."""


# --------------------------------------------------------------------------- frame choice by time

ItemT = TypeVar("ItemT")


@dataclass(slots=True)
class _Candidate(Generic[ItemT]):
    tick: int
    distance_us: int
    item: ItemT


class NearestTickSelector(Generic[ItemT]):
    """Streams items with timestamps and lets through, for each tick origin + k*period, the nearest one.

    An item is let through at once when no later item can be nearer (it lies within half the usual
    item spacing of its tick); otherwise it is held until the next item shows whether it was nearest.
    """

    def __init__(self, period_us: int) -> None:
        if period_us <= 0:
            raise ValueError(f"sampling period must be positive, got {period_us} us")
        self.period_us = period_us
        self.reset()

    def reset(self) -> None:
        self._origin_us: int | None = None
        self._last_emitted_tick: int | None = None
        self._held: _Candidate[ItemT] | None = None
        self._last_pts_us: int | None = None
        self._spacing_us: int | None = None
        self._untimed_first_emitted = False

    def offer_untimed(self, item: ItemT) -> list[ItemT]:
        """An item with no timestamp at all: only the very first one is used (it starts the timeline)."""
        if self._origin_us is None and not self._untimed_first_emitted:
            self._untimed_first_emitted = True
            return [item]
        return []

    def offer(self, pts_us: int, item: ItemT) -> list[ItemT]:
        emitted: list[ItemT] = []
        if self._origin_us is None:
            self._origin_us = pts_us
            if self._untimed_first_emitted:
                self._last_emitted_tick = 0  # the untimed first item already served tick 0
        if self._last_pts_us is not None and pts_us > self._last_pts_us:
            self._spacing_us = pts_us - self._last_pts_us
        self._last_pts_us = pts_us
        tick = math.floor((pts_us - self._origin_us + self.period_us // 2) / self.period_us)
        distance_us = abs(pts_us - (self._origin_us + tick * self.period_us))
        held = self._held
        if held is not None:
            if held.tick == tick and distance_us < held.distance_us:
                held.distance_us, held.item = distance_us, item
                return self._emit_if_nearest_possible(emitted)
            # The held one was the nearest for its tick: items now move away from it or past it.
            self._release_held(emitted)
        if self._last_emitted_tick is not None and tick <= self._last_emitted_tick:
            return emitted  # this tick is served already
        self._held = _Candidate(tick, distance_us, item)
        return self._emit_if_nearest_possible(emitted)

    def flush(self) -> list[ItemT]:
        """The stream ends: let the held item through if the stream reached its tick, else drop it."""
        emitted: list[ItemT] = []
        held = self._held
        if held is None:
            return emitted
        assert self._origin_us is not None and self._last_pts_us is not None
        tick_us = self._origin_us + held.tick * self.period_us
        if self._last_pts_us + (self._spacing_us or 0) // 2 >= tick_us:
            self._release_held(emitted)
        else:
            self._held = None  # that tick lies beyond the end of the stream
        return emitted

    @property
    def held_item(self) -> ItemT | None:
        return self._held.item if self._held is not None else None

    def replace_held(self, item: ItemT | None) -> None:
        """Swap the held item for an equivalent one (same timestamp), or drop it with None."""
        if self._held is not None:
            if item is None:
                self._held = None
            else:
                self._held.item = item

    def _emit_if_nearest_possible(self, emitted: list[ItemT]) -> list[ItemT]:
        held = self._held
        if held is not None and self._spacing_us is not None and 2 * held.distance_us <= self._spacing_us:
            self._release_held(emitted)
        return emitted

    def _release_held(self, emitted: list[ItemT]) -> None:
        assert self._held is not None
        emitted.append(self._held.item)
        self._last_emitted_tick = self._held.tick
        self._held = None


# --------------------------------------------------------------------------- motion and activity


def _grid_median(difference: np.ndarray) -> np.float32:
    """Median of every third pixel both ways: a cheap estimate of the frame-wide brightness shift.

    Same value as np.median of that grid, without np.median's per-call overhead (it runs twice a frame).
    """
    sample = difference[::3, ::3].ravel()
    middle = sample.size // 2
    if sample.size % 2:
        return np.partition(sample, middle)[middle]
    ordered = np.partition(sample, (middle - 1, middle))
    return (ordered[middle - 1] + ordered[middle]) / np.float32(2)


def _deciles(gray: np.ndarray) -> np.ndarray:
    """Grey-level deciles of a frame (every third pixel both ways; nearest rank, by partition: ~20 µs)."""
    sample = gray[::3, ::3].ravel()
    ranks = (np.arange(1, 10) * (sample.size - 1)) // 10
    return np.partition(sample, ranks)[ranks]


def _changed_beyond(difference: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels whose change, less the frame-wide shift, exceeds the threshold (works in place on `difference`)."""
    difference -= _grid_median(difference)
    np.abs(difference, out=difference)
    return difference > threshold


class MotionDetector:
    """Fraction of pixels that moved, on a small grey copy of the frame (luma only, no RGB conversion).

    A pixel counts as moving when it differs by more than `pixel_threshold` both from a running-average
    background and from the previous analysed frame, after removing the frame-wide median change (so
    exposure steps and slow light changes do not count), and when at least two of its four neighbours
    moved too (so isolated noise speckles do not count).
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._previous_deciles: np.ndarray | None = None
        self._previous_time_ms: int | None = None
        # A reformatter keeps its swscale context between frames of the same size (set-up costs ~2 ms).
        self._reformatter = VideoReformatter()

    def reset(self) -> None:
        self._background = None
        self._previous = None
        self._previous_deciles = None
        self._previous_time_ms = None

    def small_gray(self, frame: av.VideoFrame) -> np.ndarray:
        width = self.config.analysis_width
        height = max(2, round(width * frame.height / frame.width / 2) * 2)
        # swscale reads only the luma plane for a grey target; AREA averages away sensor noise.
        return self._reformatter.reformat(
            frame, width=width, height=height, format="gray", interpolation="AREA", threads=1
        ).to_ndarray()

    def score(self, frame: av.VideoFrame, time_ms: int) -> float:
        current = self.small_gray(frame).astype(np.float32)
        deciles, previous_deciles = _deciles(current), self._previous_deciles
        self._previous_deciles = deciles
        if (self._background is None or self._previous is None or self._background.shape != current.shape
                or previous_deciles is None
                or float(np.median(np.abs(deciles - previous_deciles))) > self.config.pixel_threshold):
            # First frame, or the whole picture changed tone at once (lights switched, IR mode, exposure
            # jump: every decile moves, bright parts more than dark ones, some saturate; a moving person
            # moves few). That is the light, not motion: start the models afresh from this frame.
            self._background = current
            self._previous = current
            self._previous_time_ms = time_ms
            return 0.0
        threshold = float(self.config.pixel_threshold)
        moving = _changed_beyond(current - self._background, threshold)
        moving &= _changed_beyond(current - self._previous, threshold)
        moving_neighbours = (
            moving[:-2, 1:-1].view(np.uint8)
            + moving[2:, 1:-1].view(np.uint8)
            + moving[1:-1, :-2].view(np.uint8)
            + moving[1:-1, 2:].view(np.uint8)
        )
        solid = moving[1:-1, 1:-1] & (moving_neighbours >= 2)
        score = float(np.count_nonzero(solid)) / solid.size
        elapsed_s = max(0.0, (time_ms - (self._previous_time_ms or time_ms)) / 1000.0)
        learning_rate = 1.0 - math.exp(-elapsed_s / self.config.background_time_constant_s)
        self._background += learning_rate * (current - self._background)
        self._previous = current
        self._previous_time_ms = time_ms
        return score


class ActivityTracker:
    """Active/idle with hysteresis: active at once above activate_score, idle after idle_hold_s below
    deactivate_score."""

    def __init__(self, camera_id: str, config: MotionConfig) -> None:
        self.camera_id = camera_id
        self.config = config
        self.state: ActivityStateName = "idle"
        self.score = 0.0
        self.since_ms: int | None = None
        self._last_busy_ms: int | None = None

    def snapshot(self) -> ActivityState:
        return ActivityState(state=self.state, score=self.score, since_ms=self.since_ms)

    def update(self, score: float, time_ms: int, sequence: int) -> ActivityChange | None:
        self.score = score
        if self.since_ms is None:
            self.since_ms = time_ms
        if self.state == "idle":
            if score >= self.config.activate_score and score > 0:
                self._last_busy_ms = time_ms
                return self._change_to("active", time_ms, sequence)
            return None
        if score >= self.config.deactivate_score:
            self._last_busy_ms = time_ms
            return None
        quiet_for_ms = time_ms - (self._last_busy_ms if self._last_busy_ms is not None else time_ms)
        if quiet_for_ms >= self.config.idle_hold_s * 1000:
            return self._change_to("idle", time_ms, sequence)
        return None

    def _change_to(self, state: ActivityStateName, time_ms: int, sequence: int) -> ActivityChange:
        change = ActivityChange(
            camera_id=self.camera_id,
            state=state,
            previous_state=self.state,
            score=self.score,
            since_ms=time_ms,
            sequence=sequence,
        )
        self.state = state
        self.since_ms = time_ms
        return change


# --------------------------------------------------------------------------- JPEG


def _plane_array(plane: av.video.plane.VideoPlane) -> np.ndarray:
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _is_full_range_yuv420(frame: av.VideoFrame) -> bool:
    """Planes already in JPEG's form: 4:2:0 with full-range (0-255) levels, as MJPEG and some IP cameras send."""
    name = frame.format.name
    return name == "yuvj420p" or (name == "yuv420p" and frame.color_range == FULL_COLOR_RANGE)


def encode_jpeg(
    frame: av.VideoFrame, config: JpegConfig, reformatter: VideoReformatter | None = None
) -> tuple[bytes, int, int]:
    """JPEG of the frame, longest side at most config.max_dimension; returns (jpeg, width, height).

    Encodes straight from YUV 4:2:0 planes, never via RGB. A full-range 4:2:0 frame that needs no resizing
    is encoded from the decoder's own planes; anything else takes one swscale pass (size, full-range levels).
    Pass the same `reformatter` for a stream of equal-sized frames to reuse its swscale set-up.
    """
    scale = min(1.0, config.max_dimension / max(frame.width, frame.height))
    width = max(2, round(frame.width * scale / 2) * 2)
    height = max(2, round(frame.height * scale / 2) * 2)
    if (width, height) == (frame.width, frame.height) and _is_full_range_yuv420(frame):
        jpeg_ready = frame
    else:
        # JPEG's YCbCr is full range; video is usually limited (16-235) and must be stretched. Encoding the
        # limited levels as they are would cost ~7.5 grey levels of mean error (measured on samples/vtest).
        jpeg_ready = (reformatter or VideoReformatter()).reformat(
            frame,
            width=width,
            height=height,
            format="yuv420p",
            interpolation="AREA",
            dst_color_range="JPEG",
            threads=1,
        )
    luma, blue, red = (_plane_array(plane) for plane in jpeg_ready.planes)
    jpeg = simplejpeg.encode_jpeg_yuv_planes(luma, blue, red, quality=config.quality, fastdct=config.fast_dct)
    return jpeg, width, height


# --------------------------------------------------------------------------- per-camera decoder


@dataclass(frozen=True, slots=True)
class _PacketInfo:
    """Rides through the decoder on packet.opaque -> frame.opaque, so frames keep their packet's facts."""

    sequence: int
    capture_time_ms: int
    is_keyframe: bool
    session_id: str


@dataclass(slots=True)
class _PendingFrame:
    """A decoded frame waiting to be analysed."""

    frame: av.VideoFrame
    info: _PacketInfo


@dataclass(slots=True)
class _UndecodedKeyframe:
    """A keyframe packet the fast path may still choose; decoded only if chosen."""

    packet: EncodedPacket
    pts_us: int | None


_Sample = _PendingFrame | _UndecodedKeyframe


class CameraDecoder:
    """Decodes and samples one camera's packet stream. Not thread-safe; one instance per camera.

    Counters are in `self.counters`; the current activity state in `self.activity_state`.
    """

    def __init__(
        self, camera_id: str, config: FrameSamplerConfig | None = None, jpeg_executor: Executor | None = None
    ) -> None:
        self.camera_id = camera_id
        self.config = config or FrameSamplerConfig()
        # JPEG encoding (simplejpeg and swscale release the GIL) may run on an executor while the next
        # packets decode; outputs then carry pending JPEGs until `SamplerOutput.finish()`. The executor
        # must run one job at a time per decoder (the reformatter below is reused); one worker thread does.
        self.jpeg_executor = jpeg_executor
        self.counters = SamplerCounters()
        self.motion = MotionDetector(self.config.motion)
        self.activity = ActivityTracker(camera_id, self.config.motion)
        self.last_issue: DecodeIssue | None = None
        self._period_us: int | None = None
        self._selector: NearestTickSelector[_Sample] | None = None
        if self.config.sampling.mode == "fps":
            assert self.config.sampling.fps is not None
            self._period_us = round(1_000_000 / self.config.sampling.fps)
            self._selector = NearestTickSelector(self._period_us)
        self._jpeg_reformatter = VideoReformatter()
        self._context: VideoCodecContext | None = None
        self._session_id: str | None = None
        self._stream_config: tuple[str, bytes | None] | None = None
        self._unsupported_config: tuple[str, bytes | None] | None = None
        self._last_sequence: int | None = None
        self._last_emitted_ms: int | None = None
        self._reset_timeline()

    def _reset_timeline(self) -> None:
        self._awaiting_keyframe = True
        # Keyframes mode always takes the fast path; fps mode starts on the full path until the keyframe
        # interval is known (two keyframes seen), then takes the fast path if keyframes are frequent enough.
        self._keyframes_only = self._period_us is None
        self._last_keyframe_pts_us: int | None = None
        self._keyframe_interval_us: int | None = None
        self._last_pts_us: int | None = None
        self._pts_spacing_us: int | None = None
        if self._selector is not None:
            self._selector.reset()

    # ----------------------------------------------------------------- public

    @property
    def activity_state(self) -> ActivityState:
        return self.activity.snapshot()

    @property
    def keyframes_only(self) -> bool:
        """True while non-key packets are dropped undecoded (the fast path)."""
        return self._keyframes_only

    def process(self, packet: EncodedPacket) -> SamplerOutput:
        """Take the camera's next packet; return the frames, activity changes and issues it led to."""
        if packet.camera_id != self.camera_id:
            raise FrameSamplerError(
                f"packet for camera {packet.camera_id!r} given to the decoder of camera {self.camera_id!r}"
            )
        output = SamplerOutput()
        self.counters.packets_received += 1
        if not self._accept_in_order(packet, output):
            return output
        if self._context is None and not packet.is_keyframe and not packet.codec:
            # A camera taken over mid-GOP (rebalance): its codec is known from its next keyframe, and nothing
            # before that keyframe is decodable anyway. Wait for it; an unnamed codec is no issue here.
            self.counters.packets_skipped_awaiting_keyframe += 1
            return output
        if self._context is None and not self._open_decoder(packet, output):
            return output
        if self._awaiting_keyframe:
            if not packet.is_keyframe:
                self.counters.packets_skipped_awaiting_keyframe += 1
                return output
            if not self._has_parameter_sets(packet, output):
                return output
            self._awaiting_keyframe = False
        pts_us = self._presentation_time(packet)
        enter_fast_path_after_this_packet = False
        if packet.is_keyframe:
            self._note_keyframe(pts_us)
            keyframes_suffice = self._keyframes_suffice()
            if keyframes_suffice and not self._keyframes_only:
                # Decode this keyframe on the full path still: it may be the one nearest a pending tick.
                enter_fast_path_after_this_packet = True
            elif not keyframes_suffice and self._keyframes_only:
                self._leave_fast_path(output)

        if self._keyframes_only:
            if not packet.is_keyframe:
                self.counters.non_key_packets_skipped += 1
            elif self._selector is None:  # keyframes mode: every keyframe is analysed
                for pending in self._decode(packet, pts_us, output):
                    self._analyse_keyframe(pending, output)
            else:
                self._use(self._offer(pts_us, _UndecodedKeyframe(packet, pts_us)), output)
            return output

        for pending in self._decode(packet, pts_us, output):
            self._use(self._offer(pending.frame.pts, pending), output)
        if enter_fast_path_after_this_packet:
            self._keyframes_only = True
            if self._context is not None:
                self._context.skip_frame = "NONKEY"
        return output

    def flush(self) -> SamplerOutput:
        """End of stream: analyse what is still held back. A stream that carries on afterwards resumes at its
        next keyframe."""
        output = SamplerOutput()
        self._finish_timeline(output)
        return output

    # ----------------------------------------------------------------- stream continuity

    def _accept_in_order(self, packet: EncodedPacket, output: SamplerOutput) -> bool:
        stream_config = (packet.codec, packet.extradata or None)
        if packet.session_id != self._session_id:
            if self._session_id is not None:
                self.counters.session_changes += 1
            self._restart(stream_config, output)
            self._session_id = packet.session_id
        elif stream_config != self._stream_config:
            self.counters.stream_changes += 1
            self._restart(stream_config, output)
        elif self._last_sequence is not None and packet.sequence <= self._last_sequence:
            self.counters.out_of_order_packets += 1
            return False
        elif self._last_sequence is not None and packet.sequence != self._last_sequence + 1:
            self.counters.sequence_gaps += 1
            # Frames after a hole reference what was lost: start again from the next keyframe.
            self._restart(stream_config, output)
        self._last_sequence = packet.sequence
        return True

    def _restart(self, stream_config: tuple[str, bytes | None], output: SamplerOutput) -> None:
        """New decoder and timeline; decoding resumes at the next keyframe. Motion state is kept: same camera."""
        self._finish_timeline(output)
        self._stream_config = stream_config
        self._reset_timeline()

    def _finish_timeline(self, output: SamplerOutput) -> None:
        """Analyse everything the old timeline still holds, then drop the decoder."""
        selector = self._selector
        if selector is not None and isinstance(selector.held_item, _UndecodedKeyframe):
            self._use(selector.flush(), output)  # needs the decoder, so before draining it
        if self._context is not None and not self._awaiting_keyframe:
            for pending in self._drain_decoder(output):
                if selector is None:
                    self._analyse_keyframe(pending, output)
                elif not self._keyframes_only:
                    self._use(self._offer(pending.frame.pts, pending), output)
        if selector is not None:
            self._use(selector.flush(), output)
        self._discard_decoder()
        self._reset_timeline()

    def _discard_decoder(self) -> None:
        """Drop the decoder (and with it every reference frame); the next keyframe starts a fresh one."""
        if self._context is not None:
            self.counters.decoder_resets += 1
        self._context = None
        self._awaiting_keyframe = True

    # ----------------------------------------------------------------- decoding

    def _open_decoder(self, packet: EncodedPacket, output: SamplerOutput) -> bool:
        stream_config = (packet.codec, packet.extradata or None)
        if self._unsupported_config == stream_config:
            self.counters.unsupported_codec_packets += 1
            return False
        try:
            context = av.CodecContext.create(packet.codec, "r")
        except (av.error.FFmpegError, ValueError) as error:
            return self._unsupported(packet, f"no FFmpeg decoder named {packet.codec!r} ({error})", output)
        if not isinstance(context, VideoCodecContext):
            return self._unsupported(packet, f"codec {packet.codec!r} is not a video codec", output)
        self._unsupported_config = None
        if packet.extradata:
            context.extradata = packet.extradata
        context.thread_count = self.config.decoder_threads
        # Report damaged input as an error instead of concealing it into smeared frames.
        context.options = {"err_detect": "explode"}
        context.copy_opaque = True
        context.skip_frame = "NONKEY" if self._keyframes_only else "DEFAULT"
        self._context = context
        return True

    def _unsupported(self, packet: EncodedPacket, message: str, output: SamplerOutput) -> bool:
        self._unsupported_config = (packet.codec, packet.extradata or None)
        self.counters.unsupported_codec_packets += 1
        self._report(packet, "unsupported_codec", message, output)
        return False

    def _has_parameter_sets(self, packet: EncodedPacket, output: SamplerOutput) -> bool:
        """H.264/H.265 in MP4/RTSP form is undecodable without its extradata: say so instead of failing later."""
        if packet.codec not in LENGTH_PREFIXED_CODECS or packet.extradata:
            return True
        if packet.data.startswith(ANNEX_B_START_CODES):
            return True  # Annex B byte stream: parameter sets travel in-band
        self.counters.missing_extradata_errors += 1
        self._report(
            packet,
            "missing_extradata",
            f"{packet.codec} keyframe is length-prefixed (avcC/hvcC) but the packet has no extradata; "
            "the ingest service must forward the stream's codec configuration",
            output,
        )
        return False

    def _presentation_time(self, packet: EncodedPacket) -> int | None:
        pts_us = packet.pts_us if packet.pts_us is not None else packet.dts_us
        if pts_us is None:
            self.counters.packets_without_timestamp += 1
            if self._last_pts_us is not None and self._pts_spacing_us is not None:
                pts_us = self._last_pts_us + self._pts_spacing_us  # RTSP: the first frame may carry no pts
        if pts_us is not None:
            if self._last_pts_us is not None and pts_us > self._last_pts_us:
                self._pts_spacing_us = pts_us - self._last_pts_us
            self._last_pts_us = pts_us
        return pts_us

    def _note_keyframe(self, pts_us: int | None) -> None:
        if pts_us is None:
            return
        if self._last_keyframe_pts_us is not None and pts_us > self._last_keyframe_pts_us:
            self._keyframe_interval_us = pts_us - self._last_keyframe_pts_us
        self._last_keyframe_pts_us = pts_us

    def _keyframes_suffice(self) -> bool:
        if self._period_us is None:
            return True
        if self._keyframe_interval_us is None:
            return False
        return self._period_us >= self._keyframe_interval_us * (1 - KEYFRAME_INTERVAL_TOLERANCE)

    def _leave_fast_path(self, output: SamplerOutput) -> None:
        """Keyframes became too rare for the rate: decode everything from this keyframe on."""
        assert self._selector is not None
        held = self._selector.held_item
        if isinstance(held, _UndecodedKeyframe):
            # Decode the held keyframe now, before this keyframe, so the decoder's references stay in order.
            frames = [p for p in self._decode(held.packet, held.pts_us, output) if p.info.is_keyframe]
            self._selector.replace_held(frames[0] if frames else None)
        self._keyframes_only = False
        if self._context is not None:
            self._context.skip_frame = "DEFAULT"

    def _decode(self, packet: EncodedPacket, pts_us: int | None, output: SamplerOutput) -> list[_PendingFrame]:
        if self._context is None:  # a held packet outlived its decoder (bad input in between)
            return []
        av_packet = av.Packet(packet.data)
        av_packet.pts = pts_us
        av_packet.dts = packet.dts_us if packet.dts_us is not None else pts_us
        av_packet.time_base = MICROSECONDS
        av_packet.opaque = _PacketInfo(packet.sequence, packet.capture_time_ms, packet.is_keyframe, packet.session_id)
        self.counters.packets_decoded += 1
        if not packet.is_keyframe:
            self.counters.non_key_packets_decoded += 1
        try:
            frames = self._context.decode(av_packet)
        except av.error.FFmpegError as error:
            self.counters.decode_errors += 1
            self._report(packet, "decode_error", f"{packet.codec} decoder rejected the packet: {error}", output)
            self._discard_decoder()
            return []
        return self._collect(frames, packet, output)

    def _drain_decoder(self, output: SamplerOutput) -> list[_PendingFrame]:
        """Frames the decoder still holds back (B-frame reordering). The decoder is finished after this."""
        assert self._context is not None
        context = self._context
        self._discard_decoder()
        try:
            frames = context.decode(None)
        except av.error.FFmpegError as error:
            self.counters.decode_errors += 1
            self.last_issue = DecodeIssue(
                self.camera_id,
                self._session_id or "",
                self._last_sequence or 0,
                "decode_error",
                f"camera {self.camera_id!r}: decoder failed while draining at end of stream: {error}",
            )
            output.issues.append(self.last_issue)
            return []
        return self._collect(frames, None, output)

    def _collect(
        self, frames: list[av.VideoFrame], packet: EncodedPacket | None, output: SamplerOutput
    ) -> list[_PendingFrame]:
        pending: list[_PendingFrame] = []
        for frame in frames:
            info = frame.opaque
            if not isinstance(info, _PacketInfo):
                continue  # cannot happen with copy_opaque; a frame without its packet's facts is unusable
            if frame.is_corrupt:
                self.counters.corrupt_frames += 1
                if packet is not None:
                    self._report(packet, "corrupt_frame", "the decoder flagged the frame as corrupt", output)
                self._discard_decoder()
                return pending
            self.counters.frames_decoded += 1
            pending.append(_PendingFrame(frame, info))
        return pending

    # ----------------------------------------------------------------- sampling and gating

    def _offer(self, pts_us: int | None, sample: _Sample) -> list[_Sample]:
        assert self._selector is not None
        if pts_us is None:
            return self._selector.offer_untimed(sample)
        return self._selector.offer(pts_us, sample)

    def _use(self, samples: list[_Sample], output: SamplerOutput) -> None:
        for sample in samples:
            if isinstance(sample, _PendingFrame):
                self._analyse(sample, output)
            else:
                for pending in self._decode(sample.packet, sample.pts_us, output):
                    self._analyse_keyframe(pending, output)

    def _analyse_keyframe(self, pending: _PendingFrame, output: SamplerOutput) -> None:
        # With B-frames a decoder can release a full-path frame late, after the switch to keyframes only;
        # the selector has dealt with that frame's tick already.
        if pending.info.is_keyframe:
            self._analyse(pending, output)

    def _analyse(self, pending: _PendingFrame, output: SamplerOutput) -> None:
        info = pending.info
        self.counters.frames_analysed += 1
        score = self.motion.score(pending.frame, info.capture_time_ms)
        change = self.activity.update(score, info.capture_time_ms, info.sequence)
        if change is not None:
            self.counters.activity_changes += 1
            output.activity_changes.append(change)
        reason: FrameReason
        if self.activity.state == "active":
            reason = "motion"
        elif (
            self._last_emitted_ms is None
            or info.capture_time_ms - self._last_emitted_ms >= self.config.motion.heartbeat_interval_s * 1000
        ):
            reason = "heartbeat"
        else:
            return
        future: Future[tuple[bytes, int, int]] | None = None
        if self.jpeg_executor is None:
            jpeg, width, height = encode_jpeg(pending.frame, self.config.jpeg, self._jpeg_reformatter)
        else:
            future = self.jpeg_executor.submit(encode_jpeg, pending.frame, self.config.jpeg, self._jpeg_reformatter)
            jpeg, width, height = b"", 0, 0
        if future is not None:
            output.pending_jpegs.append((len(output.frames), future))
        output.frames.append(
            SampledFrame(
                camera_id=self.camera_id,
                session_id=info.session_id,
                sequence=info.sequence,
                pts_us=pending.frame.pts,
                capture_time_ms=info.capture_time_ms,
                is_keyframe=info.is_keyframe,
                width=width,
                height=height,
                source_width=pending.frame.width,
                source_height=pending.frame.height,
                jpeg=jpeg,
                motion_score=score,
                reason=reason,
            )
        )
        self._last_emitted_ms = info.capture_time_ms
        self.counters.frames_emitted += 1
        if reason == "motion":
            self.counters.motion_frames_emitted += 1
        else:
            self.counters.heartbeat_frames_emitted += 1

    def _report(self, packet: EncodedPacket, kind: IssueKind, message: str, output: SamplerOutput) -> None:
        issue = DecodeIssue(
            camera_id=self.camera_id,
            session_id=packet.session_id,
            sequence=packet.sequence,
            kind=kind,
            message=f"camera {self.camera_id!r} packet {packet.sequence}: {message}; skipping to the next keyframe",
        )
        self.last_issue = issue
        output.issues.append(issue)


class FrameSampler:
    """All cameras of one sampler instance: one CameraDecoder each, created on first sight."""

    def __init__(self, config: FrameSamplerConfig | None = None) -> None:
        self.config = config or FrameSamplerConfig()
        self.decoders: dict[str, CameraDecoder] = {}

    def decoder_for(self, camera_id: str) -> CameraDecoder:
        decoder = self.decoders.get(camera_id)
        if decoder is None:
            decoder = self.decoders[camera_id] = CameraDecoder(camera_id, self.config)
        return decoder

    def process(self, packet: EncodedPacket) -> SamplerOutput:
        return self.decoder_for(packet.camera_id).process(packet)

    def flush(self) -> SamplerOutput:
        output = SamplerOutput()
        for decoder in self.decoders.values():
            output.extend(decoder.flush())
        return output

    def activity_states(self) -> dict[str, ActivityState]:
        return {camera_id: decoder.activity_state for camera_id, decoder in self.decoders.items()}
