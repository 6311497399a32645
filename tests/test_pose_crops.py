"""Pose on person crops (the production path) against pose on the whole frame, with the real MoveNet
MultiPose model, the real detector and real images: the fall/fighting rules must get the same keypoints;
and which people go through the model at all (pose zones, score, size)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from libs.records import DetectedObject
from services.alert_router.rules.fall import torso_angle_deg
from services.detector.config import DetectorModelConfig
from services.detector.detector import Detector
from services.detector.pose import Pose, PoseEstimator, PoseModelConfig, PoseStage, crop_regions, pose_zone_polygons
from tests.assets_fetch import DEFAULT_CACHE_DIR, fetch_stills

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """bus.jpg upright and turned by 90 degrees (a lying person), and vtest frames 2 s apart."""
    bus = np.asarray(Image.open(fetch_stills(DEFAULT_CACHE_DIR)["bus.jpg"]).convert("RGB"))
    frames = [bus, np.ascontiguousarray(np.rot90(bus))]
    with av.open(str(REPO / "samples" / "vtest-h264.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 20 == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 10:
                break
    return frames


@pytest.fixture(scope="module")
def detections(images) -> list[list[DetectedObject]]:
    detector = Detector(DetectorModelConfig())
    try:
        found = [detector.detect([image])[0] for image in images]
    finally:
        detector.close()
    # The detector does not see the people of the turned photo as people: their boxes are the pose model's own.
    lying = PoseEstimator(PoseModelConfig()).estimate([images[1]])[0]
    found[1] = [DetectedObject(p.x1, p.y1, p.x2, p.y2, 0, "person", p.score) for p in lying]
    return found


class CountingEstimator(PoseEstimator):
    """The real estimator, recording the people boxes each crop call gets."""

    def __init__(self, cfg: PoseModelConfig) -> None:
        super().__init__(cfg)
        self.boxes: list[int] = []

    def estimate_people(
        self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[tuple[float, float, float, float]]]
    ) -> list[list[Pose]]:
        self.boxes.append(sum(len(b) for b in boxes))
        return super().estimate_people(images, boxes)


def _with_keypoints(crops: bool, images, detections) -> list[list[DetectedObject]]:
    stage = PoseStage(PoseEstimator(PoseModelConfig(person_crops=crops)), needs_pose=lambda _camera: True)
    return stage.add_keypoints(["c"] * len(images), images, detections)


def test_crops_give_the_whole_frame_keypoints_on_real_images(images, detections) -> None:
    whole = _with_keypoints(False, images, detections)
    crops = _with_keypoints(True, images, detections)
    distances, angle_pairs, people_whole, people_crops = [], [], 0, 0
    for image, before, after in zip(images, whole, crops, strict=True):
        height, width = image.shape[:2]
        for a, b in zip(before, after, strict=True):
            people_whole += a.keypoints is not None
            people_crops += b.keypoints is not None
            if a.keypoints is None or b.keypoints is None:
                continue
            distances += [
                np.hypot((p.x - q.x) * width, (p.y - q.y) * height)
                for p, q in zip(a.keypoints, b.keypoints, strict=True)
                if p.score >= 0.3 and q.score >= 0.3
            ]
            angles = [torso_angle_deg([[k.x, k.y, k.score] for k in o.keypoints], width / height, 0.3) for o in (a, b)]
            if None not in angles:
                angle_pairs.append(angles)
    assert people_whole >= 30 and people_crops >= 0.95 * people_whole  # as many people get a pose
    assert len(distances) >= 300 and np.median(distances) < 4 and np.percentile(distances, 90) < 10  # pixels
    differences = [abs(a - b) for a, b in angle_pairs]
    assert len(differences) >= 20 and np.median(differences) < 3 and max(differences) < 25

    # the posture the fall rule reads: upright people stay upright, the turned (lying) one stays lying
    def angles(index: int) -> list[float]:
        height, width = images[index].shape[:2]
        people = sorted((o for o in crops[index] if o.keypoints is not None), key=lambda o: -o.score)
        found = (torso_angle_deg([[k.x, k.y, k.score] for k in o.keypoints], width / height, 0.3) for o in people)
        return [a for a in found if a is not None]

    upright, lying = angles(0), angles(1)
    assert len(upright) >= 2 and max(upright) < 20
    assert lying and lying[0] > 60  # the best-scored person of the turned photo


def test_only_people_touching_a_pose_zone_go_through_the_model(images, detections) -> None:
    bus, people = images[0], detections[0]
    left = [[0.0, 0.0], [0.3, 0.0], [0.3, 1.0], [0.0, 1.0]]
    zones = [
        {"name": "left", "polygon": left, "rules": [{"type": "fall"}]},
        {"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "rules": [{"type": "intrusion"}]},
    ]
    assert pose_zone_polygons(zones, {"fall", "fighting"}) == [left]
    estimator = CountingEstimator(PoseModelConfig())
    stage = PoseStage(estimator, needs_pose=lambda _camera: True, pose_zones=lambda _camera: [left])
    (out,) = stage.add_keypoints(["c"], [bus], [people])
    touching = [o for o in out if o.class_name == "person" and o.x1 < 0.3 and o.score >= 0.3]
    beyond = [o for o in out if o.class_name == "person" and o.x1 >= 0.3]
    assert touching and beyond and estimator.boxes == [len(touching)]
    assert any(o.keypoints is not None for o in touching) and all(o.keypoints is None for o in beyond)
    # nobody in the zone: the frame is not even decoded for pose, and no model call
    away = [[[0.95, 0.0], [1.0, 0.0], [1.0, 0.05]]]
    nobody = PoseStage(estimator, needs_pose=lambda _camera: True, pose_zones=lambda _camera: away)
    assert not nobody.wants("c", people, bus.shape[1], bus.shape[0])
    assert nobody.add_keypoints(["c"], [bus], [people]) == [people] and estimator.boxes[-1] == 0


def test_weak_and_tiny_people_get_no_pose(detections) -> None:
    stage = PoseStage(PoseEstimator(PoseModelConfig()), needs_pose=lambda _camera: True)
    person = DetectedObject(0.1, 0.1, 0.2, 0.5, 0, "person", 0.9)
    weak = DetectedObject(0.1, 0.1, 0.2, 0.5, 0, "person", 0.25)  # under the tracker's min_score 0.3
    tiny = DetectedObject(0.1, 0.1, 0.12, 0.13, 0, "person", 0.9)  # 0.03 x 576/768 x 512 = 11.5 px tall
    car = DetectedObject(0.1, 0.1, 0.9, 0.9, 2, "car", 0.9)
    assert stage.people("c", [person, weak, tiny, car], 768 / 576) == [person]
    off = PoseStage(stage.estimator, needs_pose=lambda _camera: False)
    assert off.people("c", [person], 768 / 576) == []


def test_crop_regions_merge_overlapping_people_and_keep_distant_ones_apart() -> None:
    # two people side by side (one crop), one far away (its own crop); 100 x 100 image, no margin
    regions = crop_regions([(0.1, 0.1, 0.2, 0.5), (0.15, 0.1, 0.25, 0.5), (0.8, 0.6, 0.9, 0.9)], 100, 100, 0.0)
    assert sorted(regions) == [(10, 10, 25, 50), (80, 60, 90, 90)]
    # padding by margin x the longer side, clipped to the image
    assert crop_regions([(0.0, 0.5, 0.1, 0.9)], 100, 100, 0.25) == [(0, 40, 20, 100)]
    # slack: merged when the union costs at most that many extra pixels
    apart = [(0.1, 0.1, 0.2, 0.2), (0.3, 0.1, 0.4, 0.2)]  # 100 px each, union 300 px
    assert len(crop_regions(apart, 100, 100, 0.0, merge_slack=99)) == 2
    assert crop_regions(apart, 100, 100, 0.0, merge_slack=100) == [(10, 10, 40, 20)]
    # no more boxes per crop than the model can report
    crowd = [(0.1, 0.1, 0.2, 0.5)] * 5
    assert len(crop_regions(crowd, 100, 100, 0.0, max_people=4)) == 2
