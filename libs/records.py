"""Typed records for the Avro contracts that services exchange (schemas/*.avsc), and the one box type.

Each record converts itself from and to the Avro dict (`from_avro` / `to_avro`). Times travel as
microseconds since the epoch (timestamp-micros) and are kept so, losslessly, in `*_us` fields; the
cores reason in milliseconds and read the `*_ms` properties. Enum symbols are upper case on the wire
and lower case in the cores, converted here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FrameReason = Literal["motion", "heartbeat"]
ActivityStateName = Literal["active", "idle"]


def us_to_ms(micros: int) -> int:
    return micros // 1000


def ms_to_us(millis: int) -> int:
    return millis * 1000


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box in normalised image coordinates (0..1 of the image, origin top-left)."""

    x1: float
    y1: float
    x2: float
    y2: float

    def to_avro(self) -> dict[str, float]:
        return {"x1": self.x1, "y1": self.y1, "x2": self.x2, "y2": self.y2}

    @classmethod
    def from_avro(cls, value: dict[str, float]) -> Box:
        return cls(value["x1"], value["y1"], value["x2"], value["y2"])


@dataclass(frozen=True, slots=True)
class Keypoint:
    """One body keypoint in normalised image coordinates, with its confidence."""

    x: float
    y: float
    score: float


@dataclass(frozen=True, slots=True)
class DetectedObject(Box):
    """One object found by the detector: a box with its class and confidence, and for a person the 17
    COCO keypoints when the pose stage ran (None otherwise)."""

    class_id: int
    class_name: str
    score: float
    keypoints: tuple[Keypoint, ...] | None = None

    def to_avro(self) -> dict[str, Any]:  # the DetectedObject record nests its Box
        keypoints = None if self.keypoints is None else [{"x": k.x, "y": k.y, "score": k.score} for k in self.keypoints]
        return {
            "class_id": self.class_id,
            "class_name": self.class_name,
            "score": self.score,
            "box": Box.to_avro(self),
            "keypoints": keypoints,
        }

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> DetectedObject:
        box = value["box"]
        points = value.get("keypoints")  # absent in records written before the pose stage existed
        keypoints = None if points is None else tuple(Keypoint(p["x"], p["y"], p["score"]) for p in points)
        return cls(
            box["x1"],
            box["y1"],
            box["x2"],
            box["y2"],
            value["class_id"],
            value["class_name"],
            value["score"],
            keypoints,
        )


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Kafka coordinates of a Frame record: the claim check for its image."""

    topic: str
    partition: int
    offset: int

    def to_avro(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> FrameRef:
        return cls(value["topic"], value["partition"], value["offset"])


@dataclass(frozen=True, slots=True)
class VideoPacket:
    """cctv.video.packets.v1: one demuxed, still-encoded packet (ingest → frame-sampler)."""

    camera_id: str
    session_id: str
    sequence: int
    capture_time_us: int
    pts_us: int | None
    dts_us: int | None
    is_keyframe: bool
    data: bytes
    codec: str | None = None  # keyframes carry the stream header
    extradata: bytes | None = None

    @property
    def capture_time_ms(self) -> int:
        return us_to_ms(self.capture_time_us)

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> VideoPacket:
        return cls(
            camera_id=value["camera_id"],
            session_id=value["session_id"],
            sequence=value["sequence"],
            capture_time_us=value["capture_time"],
            pts_us=value["pts_us"],
            dts_us=value["dts_us"],
            is_keyframe=value["is_keyframe"],
            data=value["data"],
            codec=value["codec"],
            extradata=value["extradata"],
        )


@dataclass(frozen=True, slots=True)
class Frame:
    """cctv.frames.v1: a sampled JPEG frame (frame-sampler → detector; alert-router reads it back)."""

    camera_id: str
    session_id: str
    sequence: int
    capture_time_us: int
    pts_us: int | None
    source_partition: int
    source_offset: int
    width: int
    height: int
    jpeg: bytes = field(repr=False)
    motion_score: float
    reason: FrameReason
    sampled_at_us: int

    @property
    def capture_time_ms(self) -> int:
        return us_to_ms(self.capture_time_us)

    def to_avro(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "session_id": self.session_id,
            "sequence": self.sequence,
            "capture_time": self.capture_time_us,
            "pts_us": self.pts_us,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "width": self.width,
            "height": self.height,
            "jpeg": self.jpeg,
            "motion_score": self.motion_score,
            "reason": self.reason.upper(),
            "sampled_at": self.sampled_at_us,
        }

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> Frame:
        return cls(
            camera_id=value["camera_id"],
            session_id=value["session_id"],
            sequence=value["sequence"],
            capture_time_us=value["capture_time"],
            pts_us=value["pts_us"],
            source_partition=value["source_partition"],
            source_offset=value["source_offset"],
            width=value["width"],
            height=value["height"],
            jpeg=value["jpeg"],
            motion_score=value["motion_score"],
            reason=value["reason"].lower(),
            sampled_at_us=value["sampled_at"],
        )


@dataclass(frozen=True, slots=True)
class CameraActivity:
    """cctv.camera-activity.v1: a camera went active or idle (frame-sampler → operator wall)."""

    camera_id: str
    state: ActivityStateName
    motion_score: float
    since_us: int
    timestamp_us: int

    def to_avro(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "state": self.state.upper(),
            "motion_score": self.motion_score,
            "since": self.since_us,
            "timestamp": self.timestamp_us,
        }

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> CameraActivity:
        return cls(
            value["camera_id"], value["state"].lower(), value["motion_score"], value["since"], value["timestamp"]
        )


@dataclass(frozen=True, slots=True)
class ModelId:
    name: str
    version: str
    sha256: str

    def to_avro(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class Detections:
    """cctv.detections.v1: the objects found in one frame (detector → alert-router)."""

    camera_id: str
    frame: FrameRef
    session_id: str
    sequence: int
    capture_time_us: int
    width: int
    height: int
    objects: list[DetectedObject]
    model: ModelId
    inference_ms: float
    detected_at_us: int

    @property
    def capture_time_ms(self) -> int:
        return us_to_ms(self.capture_time_us)

    def to_avro(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "frame": self.frame.to_avro(),
            "session_id": self.session_id,
            "sequence": self.sequence,
            "capture_time": self.capture_time_us,
            "width": self.width,
            "height": self.height,
            "objects": [o.to_avro() for o in self.objects],
            "model": self.model.to_avro(),
            "inference_ms": self.inference_ms,
            "detected_at": self.detected_at_us,
        }

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> Detections:
        model = value["model"]
        return cls(
            camera_id=value["camera_id"],
            frame=FrameRef.from_avro(value["frame"]),
            session_id=value["session_id"],
            sequence=value["sequence"],
            capture_time_us=value["capture_time"],
            width=value["width"],
            height=value["height"],
            objects=[DetectedObject.from_avro(o) for o in value["objects"]],
            model=ModelId(model["name"], model["version"], model["sha256"]),
            inference_ms=value["inference_ms"],
            detected_at_us=value["detected_at"],
        )
