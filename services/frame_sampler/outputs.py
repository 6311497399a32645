"""What goes into a camera's decoder (`EncodedPacket`) and what comes out (`SamplerOutput`: sampled
frames, activity changes, decode issues), with the per-camera counters."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

ActivityStateName = Literal["active", "idle"]
FrameReason = Literal["motion", "heartbeat"]
IssueKind = Literal["decode_error", "corrupt_frame", "missing_extradata", "unsupported_codec"]


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


@dataclass(frozen=True, slots=True)
class PacketFacts:
    """Rides through the decoder on packet.opaque -> frame.opaque, so frames keep their packet's facts."""

    sequence: int
    capture_time_ms: int
    is_keyframe: bool
    session_id: str
