"""What ingest's camera sessions share: settings, states, the records they hand out, backoff and the GOP
gate. Pure values and small helpers; nothing here blocks or knows of Kafka."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class PullSettings(BaseModel):
    open_timeout_s: float = Field(default=10.0, gt=0)
    # A stream silent for this long is considered stalled and is reconnected.
    read_timeout_s: float = Field(default=10.0, gt=0)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    backoff_jitter: float = Field(default=0.25, ge=0, le=1)
    # Periodic ONLINE status with fps and bitrate.
    status_interval_s: float = Field(default=10.0, gt=0)
    # Socket receive buffer for RTSP over UDP/TCP (FFmpeg's buffer_size), so bursts of a keyframe fit.
    rtsp_buffer_size: int = Field(default=1024 * 1024, gt=0)
    # Connection attempts per second for the whole replica (all its cameras), and how many may go at once
    # after a quiet spell; attempts beyond wait for a jittered slot. Bounds reconnect storms.
    max_connects_per_s: float = Field(default=100.0, gt=0)
    connect_burst: int = Field(default=100, ge=1)


class CameraState(StrEnum):
    CONNECTING = "CONNECTING"
    ONLINE = "ONLINE"
    RECONNECTING = "RECONNECTING"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


@dataclass(slots=True)
class PacketRecord:
    """One demuxed packet, shaped like the VideoPacket Avro record."""

    camera_id: str
    session_id: str
    sequence: int
    capture_time: int  # µs since epoch
    pts_us: int | None
    dts_us: int | None
    duration_us: int | None
    is_keyframe: bool
    codec: str | None
    extradata: bytes | None
    time_base_num: int | None
    time_base_den: int | None
    width: int | None
    height: int | None
    data: bytes

    def as_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class StatusChange:
    camera_id: str
    state: CameraState
    session_id: str | None = None
    reason: str | None = None
    fps: float | None = None
    bitrate_bps: float | None = None
    last_packet_time_ms: int | None = None
    reconnect_attempt: int = 0


def backoff_delay(attempt: int, initial_s: float, max_s: float, jitter: float, rng: random.Random) -> float:
    """Capped exponential backoff with +/- jitter, so a district's cameras do not reconnect in lockstep."""
    base = min(max_s, initial_s * (2 ** max(0, attempt - 1)))
    return max(0.0, base * (1 + rng.uniform(-jitter, jitter)))


class GopGate:
    """Admits packets while the output has room; once it has not, drops until the next keyframe, so a
    consumer never receives a group of pictures with holes (and memory never grows)."""

    def __init__(self) -> None:
        self.dropping = False
        self.dropped = 0

    def admit(self, is_keyframe: bool, has_room: bool) -> bool:
        if self.dropping and not is_keyframe:
            self.dropped += 1
            return False
        if not has_room:
            self.dropping = True
            self.dropped += 1
            return False
        self.dropping = False
        return True

    def refused(self) -> None:
        """The output refused an admitted packet after all: drop the rest of this GOP."""
        self.dropping = True
        self.dropped += 1


@dataclass
class Rates:
    """Packet and byte rates over the last status window."""

    packets: int = 0
    bytes: int = 0
    since: float = field(default_factory=time.monotonic)

    def add(self, size: int) -> None:
        self.packets += 1
        self.bytes += size

    def take(self) -> tuple[float, float]:
        elapsed = max(1e-6, time.monotonic() - self.since)
        fps, bps = self.packets / elapsed, self.bytes * 8 / elapsed
        self.packets, self.bytes, self.since = 0, 0, time.monotonic()
        return fps, bps


# Codecs IP cameras and video files of the pipeline use; the frame sampler decodes all of them.
CAMERA_CODECS = frozenset({"h264", "hevc", "mjpeg", "mpeg4", "mpeg2video", "vp8", "vp9", "av1"})
AVFMT_NOTIMESTAMPS = 0x0080  # libavformat flag: the container format carries no timestamps


def micros(value: int | None, time_base: tuple[int, int]) -> int | None:
    """Stream ticks → µs in integer arithmetic (Fraction maths costs ~5 µs a packet; this ~0.3 µs)."""
    return None if value is None else value * time_base[0] * 1_000_000 // time_base[1]
