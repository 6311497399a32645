"""Pose stage (real MoveNet MultiPose model, real photos) and the fall rule on real keypoints.

No real footage of a fall exists in the registries we can reach, so the fall is built from real
keypoints: the same real person, estimated upright on a photo and lying on the photo turned by 90°.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from services.alert_router.config import CameraConfig
from services.alert_router.model import AlertKind, Det, FrameDetections, FrameRef
from services.alert_router.pipeline import CameraPipeline
from services.alert_router.rules.fall import FallRule, torso_angle_deg
from services.detector.config import DetectorModelConfig
from services.detector.detector import Detector
from services.detector.pose import Pose, PoseEstimator, PoseModelConfig, PoseStage
from tests.assets_fetch import DEFAULT_CACHE_DIR, fetch_stills
from tests.test_alert_router_tracking import load_recorded

REPO = Path(__file__).resolve().parents[1]
CANVAS_W, CANVAS_H = 1280, 720
T0 = 1_767_614_400_000
WHOLE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


@pytest.fixture(scope="module")
def stills() -> dict[str, np.ndarray]:
    return {name: np.asarray(Image.open(path).convert("RGB")) for name, path in fetch_stills(DEFAULT_CACHE_DIR).items()}


@pytest.fixture(scope="module")
def estimator() -> PoseEstimator:
    return PoseEstimator(PoseModelConfig(input_size=384))


def angle_of(pose: Pose, width: int, height: int) -> float | None:
    return torso_angle_deg([[k.x, k.y, k.score] for k in pose.keypoints], width / height, 0.3)


def test_pose_finds_the_upright_people_of_a_real_photo(stills, estimator) -> None:
    image = stills["bus.jpg"]
    poses = estimator.estimate([image])[0]
    assert len(poses) >= 3  # the four people by the bus; the one cut by the edge may be missed
    angles = [a for a in (angle_of(p, image.shape[1], image.shape[0]) for p in poses) if a is not None]
    assert len(angles) >= 2 and max(angles) < 20
    for pose in poses:  # keypoints land inside the person's box, in original-image fractions
        inside = [k for k in pose.keypoints if k.score >= 0.3]
        assert all(pose.x1 - 0.05 <= k.x <= pose.x2 + 0.05 and pose.y1 - 0.05 <= k.y <= pose.y2 + 0.05 for k in inside)


class CountingEstimator(PoseEstimator):
    """The real estimator, recording how many images each call gets."""

    def __init__(self, cfg: PoseModelConfig) -> None:
        super().__init__(cfg)
        self.calls: list[int] = []

    def estimate(self, images: Sequence[np.ndarray]) -> list[list[Pose]]:
        self.calls.append(len(images))
        return super().estimate(images)

    def estimate_people(
        self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[tuple[float, float, float, float]]]
    ) -> list[list[Pose]]:  # the default path: crops around the people
        self.calls.append(len(images))
        return super().estimate_people(images, boxes)


def test_the_pose_stage_runs_once_per_batch_for_the_cameras_that_need_it(stills) -> None:
    container = av.open(str(REPO / "samples" / "vtest-h264.mp4"))
    vtest = next(container.decode(video=0)).to_ndarray(format="rgb24")
    container.close()
    images = [stills["bus.jpg"], stills["zidane.jpg"], vtest, stills["zidane.jpg"]]
    cameras = ["bus-stop", "office", "campus", "no-people"]
    detector = Detector(DetectorModelConfig())
    results = detector.detect(images)
    detector.close()
    results[3] = [o for o in results[3] if o.class_name != "person"]  # a frame with nobody in it
    estimator = CountingEstimator(PoseModelConfig())
    stage = PoseStage(estimator, needs_pose=lambda camera: camera != "office")
    out = stage.add_keypoints(cameras, images, results)
    assert estimator.calls == [2]  # one call: bus-stop and campus; office needs no pose, no-people has nobody
    for index in (0, 2):
        people = [o for o in out[index] if o.class_name == "person"]
        with_points = [o for o in people if o.keypoints is not None]
        assert len(with_points) >= 2 and all(len(o.keypoints) == 17 for o in with_points)
        assert all(o.keypoints is None for o in out[index] if o.class_name != "person")
    assert out[1] == results[1] and out[3] == results[3]  # untouched


def _placed(pose: Pose, width: int, height: int, scale: float, foot: tuple[float, float]) -> Det:
    """A pose from a `width`x`height` image as a person detection on the canvas, scaled and moved so its box's
    bottom centre stands at `foot` (canvas pixels): pixel geometry is kept, so angles are too."""
    x1, y1, x2, y2 = pose.x1 * width, pose.y1 * height, pose.x2 * width, pose.y2 * height
    dx, dy = foot[0] - (x1 + x2) / 2 * scale, foot[1] - y2 * scale

    def to_canvas(x: float, y: float) -> tuple[float, float]:
        return (x * scale + dx) / CANVAS_W, (y * scale + dy) / CANVAS_H

    (bx1, by1), (bx2, by2) = to_canvas(x1, y1), to_canvas(x2, y2)
    points = tuple((*to_canvas(k.x * width, k.y * height), k.score) for k in pose.keypoints)
    # The box's detection score stands in for the detector's (the keypoints and box are the pose model's).
    return Det(bx1, by1, bx2, by2, 0, "person", 0.6, points)


def _frames(dets: list[Det]) -> list[FrameDetections]:
    return [
        FrameDetections("cam", i, T0 + i * 500, FrameRef("f", 0, i), CANVAS_W, CANVAS_H, [d])
        for i, d in enumerate(dets)
    ]


def _fall_alerts(dets: list[Det]) -> list[int]:
    camera = CameraConfig.model_validate(
        {"camera_id": "cam", "zones": [{"name": "all", "polygon": WHOLE, "rules": [{"type": "fall"}]}]}
    )
    pipeline = CameraPipeline(camera)
    return [e.started_at - T0 for f in _frames(dets) for e in pipeline.process(f) if e.kind is AlertKind.NEW]


@pytest.fixture(scope="module")
def upright_and_lying(stills, estimator) -> tuple[Det, Det]:
    image = stills["bus.jpg"]
    height, width = image.shape[:2]
    turned = np.ascontiguousarray(np.rot90(image))
    upright = max(estimator.estimate([image])[0], key=lambda p: p.score)
    lying = max(estimator.estimate([turned])[0], key=lambda p: p.score)
    assert angle_of(upright, width, height) < 20 and angle_of(lying, height, width) > 60  # real keypoints say so
    scale = 0.5 * CANVAS_H / ((upright.y2 - upright.y1) * height)  # the standing person: half the frame tall
    foot = (CANVAS_W / 2, 0.9 * CANVAS_H)
    return _placed(upright, width, height, scale, foot), _placed(lying, height, width, scale, foot)


def test_a_fall_on_real_keypoints_alerts_after_min_down_s_and_standing_does_not(upright_and_lying) -> None:
    upright, lying = upright_and_lying
    fall = [upright] * 8 + [lying] * 16  # 4 s standing, then 8 s on the ground, 2 fps
    (alert_ms,) = _fall_alerts(fall)
    # Lying from 4.0 s; its (new) track is confirmed at 4.5 s; down for min_down_s = 5 s.
    assert 9_000 <= alert_ms <= 10_000
    assert _fall_alerts([upright] * 24) == []
    assert _fall_alerts([lying] * 24) == []  # already lying when first seen (a sleeper): no fall seen
    assert _fall_alerts([upright] * 8 + [lying] * 8 + [upright] * 8) == []  # got up within 5 s


def test_walkers_of_the_sample_clip_never_fall() -> None:
    # Recorded real detections (no keypoints: the box-shape fallback decides), 2 fps, 79.5 s, 3-9 walkers.
    camera = CameraConfig.model_validate(
        {"camera_id": "vtest", "zones": [{"name": "all", "polygon": WHOLE, "rules": [{"type": "fall"}]}]}
    )
    pipeline = CameraPipeline(camera)
    assert [e for f in load_recorded(0.5) for e in pipeline.process(f)] == []


def test_fall_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="upright_max_deg"):
        FallRule(upright_max_deg=70, lying_min_deg=60)
    with pytest.raises(ValidationError, match="lying_max_ratio"):
        FallRule(upright_min_ratio=0.7, lying_max_ratio=0.8)


def test_the_detection_stage_adds_keypoints_only_for_cameras_with_a_pose_rule(stills) -> None:
    from libs.kafka import Incoming
    from libs.records import Detections, Frame
    from services.detector.stage import DetectionStage

    def frame_record(camera_id: str, still: str, offset: int) -> Incoming:
        jpeg = fetch_stills(DEFAULT_CACHE_DIR)[still].read_bytes()
        height, width = stills[still].shape[:2]
        frame = Frame(
            camera_id=camera_id,
            session_id="s",
            sequence=offset,
            capture_time_us=T0 * 1000,
            pts_us=None,
            source_partition=0,
            source_offset=offset,
            width=width,
            height=height,
            jpeg=jpeg,
            motion_score=0.1,
            reason="motion",
            sampled_at_us=T0 * 1000,
        )
        # `raw` (the confluent Message) is not read by the stage.
        return Incoming("cctv.frames.v1", 0, offset, camera_id.encode(), frame.to_avro(), None, None)  # type: ignore[arg-type]

    estimator = CountingEstimator(PoseModelConfig())
    detector = Detector(DetectorModelConfig())
    stage = DetectionStage(detector, PoseStage(estimator, needs_pose=lambda camera: camera.startswith("falls-")))
    batch = [
        frame_record("falls-bus", "bus.jpg", 1),
        frame_record("plain", "zidane.jpg", 2),
        frame_record("falls-office", "zidane.jpg", 3),
    ]
    outputs, rejected = stage.handle(batch)
    detector.close()
    assert not rejected and estimator.calls == [2]  # both pose cameras' frames in one call
    by_camera = {d.camera_id: d for d in (Detections.from_avro(o.value) for o in outputs)}
    for camera in ("falls-bus", "falls-office"):
        assert any(o.keypoints is not None for o in by_camera[camera].objects if o.class_name == "person")
    assert all(o.keypoints is None for o in by_camera["plain"].objects)
