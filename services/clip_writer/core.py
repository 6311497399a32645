"""Clip-writer core: which packets make an incident's evidence clip, and when a clip may be deleted.

Pure logic, no Kafka and no S3: the loop in main.py feeds it packets read from cctv.video.packets.v1
and stores what it returns. Times are microseconds since the epoch (the packets' capture_time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from libs.evidence import check_alert_id

US = 1_000_000
DAY_US = 86_400 * US


class ClipPolicy(BaseModel):
    pre_roll_s: float = Field(default=10.0, ge=0, le=600)
    post_roll_s: float = Field(default=10.0, ge=0, le=600)
    # Long incidents become several objects of at most about this length (cut at a keyframe), so no
    # object grows without bound and a player can start on any of them.
    segment_s: float = Field(default=300.0, gt=0, le=3600)
    retention_days: float = Field(default=30.0, gt=0)
    # Wait this long after the post-roll for late packets (ingest batching, producer linger).
    settle_s: float = Field(default=3.0, ge=0)


class ClipError(Exception):
    """An incident's clip cannot be cut; the message says why (e.g. the packets have expired)."""


@dataclass(frozen=True)
class Incident:
    """What the clip writer needs from an END alert."""

    alert_id: str
    camera_id: str
    event_type: str
    started_at_us: int
    ended_at_us: int

    @classmethod
    def from_alert(cls, alert: dict[str, Any]) -> Incident:
        ended = alert.get("ended_at") or alert["detected_at"]
        return cls(
            check_alert_id(alert["alert_id"]),
            alert["camera_id"],
            alert["event_type"],
            int(alert["started_at"]),
            int(ended),
        )

    def window(self, policy: ClipPolicy) -> tuple[int, int]:
        """Capture-time span the clip must cover: pre-roll before the start to post-roll after the end."""
        return (self.started_at_us - int(policy.pre_roll_s * US), self.ended_at_us + int(policy.post_roll_s * US))

    def due_at_us(self, policy: ClipPolicy) -> int:
        """Wall-clock time from which every packet of the post-roll should be on the topic."""
        return self.window(policy)[1] + int(policy.settle_s * US)


@dataclass(slots=True)
class Packet:
    """One VideoPacket record with its Kafka coordinates."""

    partition: int
    offset: int
    session_id: str
    capture_time_us: int
    pts_us: int | None
    dts_us: int | None
    duration_us: int | None
    is_keyframe: bool
    codec: str | None
    extradata: bytes | None
    width: int | None
    height: int | None
    data: bytes

    @classmethod
    def from_record(cls, partition: int, offset: int, value: dict[str, Any]) -> Packet:
        return cls(
            partition,
            offset,
            value["session_id"],
            value["capture_time"],
            value["pts_us"],
            value["dts_us"],
            value["duration_us"],
            value["is_keyframe"],
            value["codec"],
            value["extradata"],
            value["width"],
            value["height"],
            value["data"],
        )

    @property
    def media_time_us(self) -> int:
        return self.pts_us if self.pts_us is not None else self.capture_time_us


@dataclass
class Segment:
    """Consecutive packets of one stream session, starting at a keyframe that carries the codec header."""

    index: int
    packets: list[Packet] = field(default_factory=list)

    @property
    def header(self) -> Packet:
        return self.packets[0]

    @property
    def start_us(self) -> int:
        return self.packets[0].capture_time_us

    @property
    def end_us(self) -> int:
        last = self.packets[-1]
        return last.capture_time_us + (last.duration_us or 0)

    @property
    def media_duration_us(self) -> int:
        last = self.packets[-1]
        return last.media_time_us + (last.duration_us or 0) - self.packets[0].media_time_us


def cut_segments(packets: list[Packet], window: tuple[int, int], policy: ClipPolicy) -> list[Segment]:
    """The packets (of one camera, in offset order) that cover `window`, as segments.

    Starts at the last keyframe at or before the window start (the pre-roll is never cut short by up to
    one GOP); if the stream began later, at its first keyframe. Ends with the packet whose duration
    reaches the window end. A new session (ingest reconnected) or a segment longer than `segment_s` starts a new
    segment at the next keyframe that carries a codec header.
    """
    start_us, end_us = window
    start_index = None
    for index, packet in enumerate(packets):
        if packet.capture_time_us > start_us and start_index is not None:
            break
        if packet.is_keyframe and packet.codec:
            start_index = index
            if packet.capture_time_us > start_us:
                break
    if start_index is None:
        raise ClipError("no keyframe with a codec header in the packets read for this incident")
    segments: list[Segment] = []
    current: Segment | None = None
    limit_us = int(policy.segment_s * US)
    for packet in packets[start_index:]:
        if current is not None and current.end_us >= end_us:
            break  # the window is covered (the last packet's duration reaches its end)
        starts_new = (
            packet.is_keyframe
            and packet.codec is not None
            and (
                current is None
                or packet.session_id != current.header.session_id
                or packet.capture_time_us - current.start_us >= limit_us
            )
        )
        if starts_new:
            current = Segment(len(segments))
            segments.append(current)
        elif current is None or packet.session_id != current.header.session_id:
            continue  # a new session's packets before its first keyframe cannot be decoded
        current.packets.append(packet)
    return segments


def covers(segments: list[Segment], window: tuple[int, int]) -> bool:
    """True when the packets reach the end of the window (else more may still arrive)."""
    return bool(segments) and segments[-1].end_us >= window[1]


def retention_until_us(incident: Incident, policy: ClipPolicy) -> int:
    return incident.ended_at_us + int(policy.retention_days * DAY_US)


def deletion_due(manifest: dict[str, Any], held: bool, now_us: int) -> bool:
    """A clip is destroyed once its retention has passed, unless it is on legal hold."""
    return not held and int(manifest["retention_until_us"]) <= now_us
