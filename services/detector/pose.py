"""Pose stage: multi-person pose (MoveNet MultiPose) on frames with people, for cameras whose rules need
keypoints (falls, fighting); the keypoints are attached to the person detections they belong to.

Pure core, no Kafka: `PoseEstimator` runs the model over any number of images (one forward pass for all
of them when the model takes a batch, else one per image, always in one call so frames of many cameras
share the session and its threads); `PoseStage` picks the frames that need it and matches poses to the
detector's person boxes by IoU.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime  # type: ignore[import-untyped]
import shapely
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from libs.records import DetectedObject, Keypoint
from services.detector.config import REPO_ROOT, ModelLoadError
from services.detector.model import container_cpu_limit, file_sha256
from services.detector.preprocess import decode_jpeg

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
    # Crops: the model sees only padded regions around the detector's person boxes (merged where that costs
    # no more pixels), at the whole-frame run's pixel scale: same people, same resolution, a fraction of the
    # pixels (measured in docs/quality.md). False: the whole frame.
    person_crops: bool = Field(default=True, description="run on person crops instead of the whole frame")
    crop_margin: float = Field(default=0.25, ge=0, le=2, description="crop padding per side, x the box's longer side")
    # The alert-router tracker's default min_score: weaker person boxes never reach a track, so no keypoints.
    min_person_score: float = Field(default=0.3, ge=0, le=1, description="person boxes under this get no pose")
    # Measured on the sample clip (docs/quality.md): of 166 people under 24 px tall at the model's scale the
    # model found a pose for none, whole frame or crop; they keep the box-shape fallback of the fall rule.
    min_person_px: int = Field(default=24, ge=0, le=1024, description="people shorter at the input scale get no pose")
    # One session call costs about as much as this many input pixels (2.5-3 ms vs 0.43 us/pixel, measured).
    call_cost_px: int = Field(default=6000, ge=0, description="crops merge when that costs fewer extra pixels")
    max_people_per_crop: int = Field(default=4, ge=1, le=MAX_PEOPLE)

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
    """Where a model input came from: a region of an image, scaled, zero-padded right and bottom."""

    width: int  # the whole image's
    height: int
    scale: float  # input pixels per original pixel
    input_w: int
    input_h: int
    left: int = 0  # the region's top-left corner in the image
    top: int = 0


PixelBox = tuple[int, int, int, int]  # x1, y1, x2, y2 in image pixels, end exclusive
MIN_CROP_INPUT = 64  # smallest crop input side (MoveNet's stride is 32; smaller gives it no context)


def _area(box: PixelBox) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _union(a: PixelBox, b: PixelBox) -> PixelBox:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def crop_regions(
    boxes: Sequence[tuple[float, float, float, float]],
    width: int,
    height: int,
    margin: float,
    merge_slack: float = 0.0,
    max_people: int = MAX_PEOPLE,
) -> list[PixelBox]:
    """Pixel regions covering each person box (fractions) padded by `margin` x its longer side. Two regions
    are merged (one model call instead of two) when their union has at most `merge_slack` pixels more than
    both apart and holds no more than `max_people` boxes (the model reports at most six people)."""
    regions: list[tuple[PixelBox, int]] = []
    for x1, y1, x2, y2 in boxes:
        pad = margin * max((x2 - x1) * width, (y2 - y1) * height)
        left, top = max(0, int(x1 * width - pad)), max(0, int(y1 * height - pad))
        right, bottom = min(width, int(np.ceil(x2 * width + pad))), min(height, int(np.ceil(y2 * height + pad)))
        if right > left and bottom > top:
            regions.append(((left, top, right, bottom), 1))
    merged = True
    while merged:
        merged = False
        for i, j in itertools.combinations(range(len(regions)), 2):
            (a, count_a), (b, count_b) = regions[i], regions[j]
            joined = _union(a, b)
            if count_a + count_b <= max_people and _area(joined) <= _area(a) + _area(b) + merge_slack:
                regions[i] = (joined, count_a + count_b)
                del regions[j]
                merged = True
                break
    return [region for region, _ in regions]


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

    def _place(self, image: np.ndarray, region: PixelBox | None = None) -> tuple[np.ndarray, _Placement]:
        """A region (default: all) of an RGB uint8 image at the whole image's letterbox scale, as an int32
        input of sides rounded up to MoveNet's stride (top-left aligned, zero padding)."""
        height, width = image.shape[:2]
        size = self.cfg.input_size
        scale = min(size / width, size / height)
        left, top, right, bottom = region or (0, 0, width, height)
        resized = np.asarray(
            Image.fromarray(image[top:bottom, left:right]).resize(
                (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))),
                Image.Resampling.BILINEAR,
            )
        )
        if region is None:
            input_h = input_w = size
        else:
            input_h, input_w = (max(MIN_CROP_INPUT, -(-side // 32) * 32) for side in resized.shape[:2])
        canvas = np.zeros((input_h, input_w, 3), dtype=np.int32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        return canvas, _Placement(width, height, scale, input_w, input_h, left, top)

    def run_session(self, tensor: np.ndarray) -> np.ndarray:
        """Bare model call on a prepared [N, H, W, 3] int32 tensor (what the benchmark compares with)."""
        if self.fixed_batch is None:
            return self.session.run(None, {self.input_name: tensor})[0]
        return np.concatenate(
            [self.session.run(None, {self.input_name: tensor[i : i + 1]})[0] for i in range(len(tensor))]
        )

    def _run_all(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Model rows per input: inputs of one shape share a call (crops differ in size)."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, tensor in enumerate(inputs):
            by_shape.setdefault(tensor.shape, []).append(index)
        rows: list[np.ndarray] = [np.empty(0)] * len(inputs)
        for indices in by_shape.values():
            for index, found in zip(indices, self.run_session(np.stack([inputs[i] for i in indices])), strict=True):
                rows[index] = found
        return rows

    def estimate(self, images: Sequence[np.ndarray]) -> list[list[Pose]]:
        """Poses in whole images."""
        if not images:
            return []
        placed = [self._place(image) for image in images]
        raw = self._run_all([tensor for tensor, _ in placed])
        return [self._decode(rows, placement) for rows, (_, placement) in zip(raw, placed, strict=True)]

    def estimate_people(
        self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[tuple[float, float, float, float]]]
    ) -> list[list[Pose]]:
        """Poses of the people in `boxes[i]` (x1, y1, x2, y2 fractions) of `images[i]`, from crops around
        them; a frame whose crops would have as many pixels as the whole runs whole."""
        jobs: list[tuple[int, np.ndarray, _Placement]] = []
        for index, (image, people) in enumerate(zip(images, boxes, strict=True)):
            if not people:
                continue
            height, width = image.shape[:2]
            scale = min(self.cfg.input_size / width, self.cfg.input_size / height)
            slack = self.cfg.call_cost_px / scale**2  # in image pixels
            regions = crop_regions(people, width, height, self.cfg.crop_margin, slack, self.cfg.max_people_per_crop)
            if sum(_area(r) for r in regions) >= width * height:
                regions = [(0, 0, width, height)]
            for region in regions:
                jobs.append((index, *self._place(image, region)))
        raw = self._run_all([tensor for _, tensor, _ in jobs])
        out: list[list[Pose]] = [[] for _ in images]
        for (index, _, placement), rows in zip(jobs, raw, strict=True):
            out[index].extend(self._decode(rows, placement))
        return out

    def _decode(self, rows: np.ndarray, placement: _Placement) -> list[Pose]:
        # model output: fractions of the input -> pixels of the image -> fractions of the image
        def to_x(v: float) -> float:
            return float(np.clip((v * placement.input_w / placement.scale + placement.left) / placement.width, 0, 1))

        def to_y(v: float) -> float:
            return float(np.clip((v * placement.input_h / placement.scale + placement.top) / placement.height, 0, 1))

        poses = []
        for row in rows[:MAX_PEOPLE]:
            score = float(row[55])
            if score < self.cfg.min_pose_score:
                continue
            points = row[:51].reshape(17, 3)
            keypoints = tuple(Keypoint(to_x(x), to_y(y), float(s)) for y, x, s in points)
            ymin, xmin, ymax, xmax = (float(v) for v in row[51:55])
            poses.append(Pose(to_x(xmin), to_y(ymin), to_x(xmax), to_y(ymax), score, keypoints))
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


Polygon = Sequence[Sequence[float]]  # [[x, y], ...] fractions of the frame, as zones are drawn


def pose_zone_polygons(zones: Sequence[Mapping[str, Any]], rule_types: Collection[str]) -> list[Polygon]:
    """The polygons of a camera's zones that have a rule of one of `rule_types` (zones as configured)."""
    return [zone["polygon"] for zone in zones if any(r.get("type") in rule_types for r in zone.get("rules") or [])]


class PoseStage:
    """Adds keypoints to the detections of a batch of frames from many cameras: only people of cameras that
    `needs_pose(camera_id)`, and with `pose_zones` only those whose box touches one of the camera's zones
    with a pose-needing rule, go through the model, all frames in one call."""

    def __init__(
        self,
        estimator: PoseEstimator,
        needs_pose: Callable[[str], bool],
        person_classes: frozenset[str] = frozenset({"person"}),
        pose_zones: Callable[[str], Sequence[Polygon]] | None = None,
    ) -> None:
        self.estimator = estimator
        self.needs_pose = needs_pose
        self.person_classes = person_classes
        self.pose_zones = pose_zones
        self.frames_run = 0
        self.people_run = 0

    def people(self, camera_id: str, objects: list[DetectedObject], aspect: float) -> list[DetectedObject]:
        """The people of a frame (`aspect`: its width / height) that need keypoints: in a pose zone (any part
        of the box) of a pose camera, scored and tall enough for the model to find their pose."""
        if not self.needs_pose(camera_id):
            return []
        cfg = self.estimator.cfg
        # frame height in model-input pixels: the letterbox scale is set by the longer side
        input_height = cfg.input_size * min(1.0, 1.0 / aspect)
        people = [
            o
            for o in objects
            if o.class_name in self.person_classes
            and o.score >= cfg.min_person_score
            and (o.y2 - o.y1) * input_height >= cfg.min_person_px
        ]
        if self.pose_zones is None or not people:
            return people
        zones = [shapely.Polygon(polygon) for polygon in self.pose_zones(camera_id) if len(polygon) >= 3]
        return [o for o in people if any(zone.intersects(shapely.box(o.x1, o.y1, o.x2, o.y2)) for zone in zones)]

    def image(self, jpeg: bytes, decoded: np.ndarray | None, decoded_for: int) -> np.ndarray:
        """The frame for the pose model: the detector's decode (`decoded`, fit for a `decoded_for` px
        input) when it has the resolution the pose input needs, else a decode of the JPEG."""
        if decoded is not None and decoded_for >= self.estimator.cfg.input_size:
            return decoded
        return decode_jpeg(jpeg, self.estimator.cfg.input_size)

    def wants(self, camera_id: str, objects: list[DetectedObject], width: int, height: int) -> bool:
        """Whether a frame goes through the pose model: someone in it needs keypoints."""
        return bool(self.people(camera_id, objects, width / height))

    def add_keypoints(
        self, camera_ids: Sequence[str], images: Sequence[np.ndarray | None], results: list[list[DetectedObject]]
    ) -> list[list[DetectedObject]]:
        """`images[i]` may be None for a frame `wants` says no to (the caller need not decode it)."""
        chosen: list[tuple[int, list[DetectedObject]]] = []
        for index, (camera_id, image, objects) in enumerate(zip(camera_ids, images, results, strict=True)):
            people = [] if image is None else self.people(camera_id, objects, image.shape[1] / image.shape[0])
            if people:
                chosen.append((index, people))
        frames = [images[i] for i, _ in chosen]
        if self.estimator.cfg.person_crops:
            boxes = [[(o.x1, o.y1, o.x2, o.y2) for o in people] for _, people in chosen]
            poses = self.estimator.estimate_people(frames, boxes)  # type: ignore[arg-type]
        else:
            poses = self.estimator.estimate(frames)  # type: ignore[arg-type]
        self.frames_run += len(chosen)
        self.people_run += sum(len(people) for _, people in chosen)
        out = list(results)
        for (index, people), found in zip(chosen, poses, strict=True):
            # Only the people asked for get keypoints (a whole-frame run also sees those outside the zones).
            attached = attach_keypoints(people, found, self.estimator.cfg.min_iou, self.person_classes)
            replaced = {id(person): with_points for person, with_points in zip(people, attached, strict=True)}
            out[index] = [replaced.get(id(o), o) for o in results[index]]
        return out
