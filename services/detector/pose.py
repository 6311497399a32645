"""Pose stage: multi-person pose (MoveNet MultiPose) on frames with people, for cameras whose rules need
keypoints (falls, fighting); the keypoints are attached to the person detections they belong to.

Pure core, no Kafka: `PoseEstimator` runs the model over any number of images (one forward pass for all
of them when the model takes a batch, else one per image, always in one call so frames of many cameras
share the session and its threads); `PoseStage` picks the frames that need it and matches poses to the
detector's person boxes by IoU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime  # type: ignore[import-untyped]
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from libs.records import DetectedObject, Keypoint
from services.detector.config import REPO_ROOT, ModelLoadError
from services.detector.model import container_cpu_limit, file_sha256

DEFAULT_POSE_MODEL = REPO_ROOT / "models" / "movenet-multipose-lightning.onnx"
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
MAX_PEOPLE = 6  # MoveNet MultiPose reports at most six people per image


class PoseModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(default=DEFAULT_POSE_MODEL, description="ONNX MoveNet MultiPose model")
    # 512: on the sample clip 4.9 people per frame found vs 1.8 at 256 px (CCTV people are small); docs/quality.md.
    input_size: int = Field(default=512, ge=128, le=1024, description="square input side (multiple of 32)")
    min_pose_score: float = Field(default=0.2, ge=0, le=1, description="person score under which a pose is dropped")
    min_iou: float = Field(default=0.3, gt=0, le=1, description="pose box vs person box overlap to attach keypoints")
    intra_op_threads: int | None = Field(default=None, ge=1, le=256)

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, size: int) -> int:
        if size % 32:
            raise ValueError(f"input_size must be a multiple of 32 (MoveNet's stride), got {size}")
        return size

    @field_validator("path")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"pose model {path} does not exist; build it with models/convert_movenet_multipose.py")
        return path


@dataclass(frozen=True, slots=True)
class Pose:
    """One person's pose: box and keypoints in fractions of the original image."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    keypoints: tuple[Keypoint, ...]


@dataclass(frozen=True, slots=True)
class _Placement:
    width: int
    height: int
    scale: float  # input pixels per original pixel
    pad_x: float
    pad_y: float


class PoseEstimator:
    def __init__(self, cfg: PoseModelConfig) -> None:
        self.cfg = cfg
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cfg.intra_op_threads or container_cpu_limit()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(
                str(cfg.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"cannot load pose model {cfg.path}: {error}") from error
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        batch = model_input.shape[0]
        self.fixed_batch = batch if isinstance(batch, int) else None
        self.sha256 = file_sha256(cfg.path)

    def _place(self, image: np.ndarray) -> tuple[np.ndarray, _Placement]:
        """Letterbox an RGB uint8 image into the square int32 input (top-left aligned, zero padding)."""
        height, width = image.shape[:2]
        size = self.cfg.input_size
        scale = min(size / width, size / height)
        resized = np.asarray(
            Image.fromarray(image).resize(
                (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR
            )
        )
        canvas = np.zeros((size, size, 3), dtype=np.int32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        return canvas, _Placement(width, height, scale, 0.0, 0.0)

    def run_session(self, tensor: np.ndarray) -> np.ndarray:
        """Bare model call on a prepared [N, S, S, 3] int32 tensor (what the benchmark compares with)."""
        if self.fixed_batch is None:
            return self.session.run(None, {self.input_name: tensor})[0]
        return np.concatenate(
            [self.session.run(None, {self.input_name: tensor[i : i + 1]})[0] for i in range(len(tensor))]
        )

    def estimate(self, images: Sequence[np.ndarray]) -> list[list[Pose]]:
        if not images:
            return []
        placed = [self._place(image) for image in images]
        raw = self.run_session(np.stack([tensor for tensor, _ in placed]))
        return [self._decode(rows, placement) for rows, (_, placement) in zip(raw, placed, strict=True)]

    def _decode(self, rows: np.ndarray, placement: _Placement) -> list[Pose]:
        size = self.cfg.input_size
        to_x = size / placement.scale / placement.width  # input fraction -> original fraction
        to_y = size / placement.scale / placement.height
        poses = []
        for row in rows[:MAX_PEOPLE]:
            score = float(row[55])
            if score < self.cfg.min_pose_score:
                continue
            points = row[:51].reshape(17, 3)
            keypoints = tuple(
                Keypoint(float(np.clip(x * to_x, 0, 1)), float(np.clip(y * to_y, 0, 1)), float(s)) for y, x, s in points
            )
            ymin, xmin, ymax, xmax = (float(v) for v in row[51:55])
            poses.append(
                Pose(
                    float(np.clip(xmin * to_x, 0, 1)),
                    float(np.clip(ymin * to_y, 0, 1)),
                    float(np.clip(xmax * to_x, 0, 1)),
                    float(np.clip(ymax * to_y, 0, 1)),
                    score,
                    keypoints,
                )
            )
        return poses


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def attach_keypoints(
    objects: list[DetectedObject],
    poses: list[Pose],
    min_iou: float,
    person_classes: frozenset[str] = frozenset({"person"}),
) -> list[DetectedObject]:
    """Each pose to the person box it overlaps most (greedy, best pairs first; one pose per person)."""
    pairs = sorted(
        (
            (_iou((o.x1, o.y1, o.x2, o.y2), (p.x1, p.y1, p.x2, p.y2)), oi, pi)
            for oi, o in enumerate(objects)
            if o.class_name in person_classes
            for pi, p in enumerate(poses)
        ),
        reverse=True,
    )
    out = list(objects)
    used_objects: set[int] = set()
    used_poses: set[int] = set()
    for iou, oi, pi in pairs:
        if iou < min_iou:
            break
        if oi in used_objects or pi in used_poses:
            continue
        used_objects.add(oi)
        used_poses.add(pi)
        out[oi] = dataclasses.replace(objects[oi], keypoints=poses[pi].keypoints)
    return out


class PoseStage:
    """Adds keypoints to the detections of a batch of frames from many cameras: only frames of cameras
    that `needs_pose(camera_id)` and with at least one person go through the model, all in one call."""

    def __init__(
        self,
        estimator: PoseEstimator,
        needs_pose: Callable[[str], bool],
        person_classes: frozenset[str] = frozenset({"person"}),
    ) -> None:
        self.estimator = estimator
        self.needs_pose = needs_pose
        self.person_classes = person_classes
        self.frames_run = 0

    def wants(self, camera_id: str, objects: list[DetectedObject]) -> bool:
        """Whether a frame goes through the pose model: its camera needs pose and someone is in it."""
        return self.needs_pose(camera_id) and any(o.class_name in self.person_classes for o in objects)

    def add_keypoints(
        self, camera_ids: Sequence[str], images: Sequence[np.ndarray | None], results: list[list[DetectedObject]]
    ) -> list[list[DetectedObject]]:
        """`images[i]` may be None for a frame `wants` says no to (the caller need not decode it)."""
        chosen = [
            i
            for i, (camera_id, image, objects) in enumerate(zip(camera_ids, images, results, strict=True))
            if image is not None and self.wants(camera_id, objects)
        ]
        poses = self.estimator.estimate([images[i] for i in chosen])  # type: ignore[misc]
        self.frames_run += len(chosen)
        out = list(results)
        for index, found in zip(chosen, poses, strict=True):
            out[index] = attach_keypoints(results[index], found, self.estimator.cfg.min_iou, self.person_classes)
        return out
