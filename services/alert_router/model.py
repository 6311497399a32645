"""Plain data passed into and out of the alert-router core (no Kafka, no Faust)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from libs.records import Box, FrameRef  # the one box and claim-check types; FrameRef re-exported for the router

if TYPE_CHECKING:
    from libs.records import DetectedObject


@dataclass(frozen=True, slots=True)
class Det(Box):
    """One detection: the one Box (corners normalised to 0..1 of the frame) with class and confidence."""

    class_id: int
    class_name: str
    score: float
    # A person's 17 COCO keypoints as (x, y, score), normalised; None when no pose stage ran.
    keypoints: tuple[tuple[float, float, float], ...] | None = None

    @classmethod
    def of(cls, o: DetectedObject) -> Det:
        """The tracker's view of one object of a Detections record."""
        keypoints = None if o.keypoints is None else tuple((k.x, k.y, k.score) for k in o.keypoints)
        return cls(o.x1, o.y1, o.x2, o.y2, o.class_id, o.class_name, o.score, keypoints)

    def __post_init__(self) -> None:
        if not (self.x2 > self.x1 and self.y2 > self.y1):
            raise ValueError(
                f"detection box of {self.class_name!r} is empty or inverted: "
                f"({self.x1}, {self.y1}, {self.x2}, {self.y2}); expected x1 < x2 and y1 < y2"
            )


@dataclass(frozen=True, slots=True)
class FrameDetections:
    """All detections of one sampled frame of one camera."""

    camera_id: str
    frame_seq: int
    capture_time_ms: int
    frame_ref: FrameRef
    width: int
    height: int
    detections: list[Det] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"camera {self.camera_id!r} frame {self.frame_seq}: width and height must be positive, "
                f"got {self.width}x{self.height}"
            )

    @property
    def aspect(self) -> float:
        """Width / height: converts normalised x distances into units of the frame height."""
        return self.width / self.height


@dataclass(frozen=True, slots=True)
class TrackedBox(Box):
    """The box of a tracked object, as carried on alerts (the Alert record's flat TrackedBox)."""

    track_id: int
    class_name: str
    score: float

    def to_avro(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "class_name": self.class_name, "score": self.score} | Box.to_avro(self)


class AlertKind(StrEnum):
    NEW = "new"
    UPDATE = "update"
    END = "end"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER[self]


_SEVERITY_ORDER = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One message about an incident: `new` once, `update` (rate limited) while it lasts, `end` once.

    Times are epoch milliseconds of frame capture (never wall clock), so a replay gives identical events.
    `ended_at` is the capture time of the last frame on which the condition still held.
    """

    kind: AlertKind
    alert_id: str
    rule: str
    rule_type: str
    zone: str
    camera_id: str
    site_id: str
    severity: Severity
    started_at: int
    detected_at: int
    ended_at: int | None
    track_ids: list[int]
    boxes: list[TrackedBox]
    frame_ref: FrameRef | None
    description: str
