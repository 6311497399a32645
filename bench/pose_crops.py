"""Pose on person crops vs on the whole frame: what the fall/fighting rules get from each, on real frames.

Runs the real detector and the real pose model (512 px scale) on the sample clip at 2 fps (the frames of
tests/data/detections/vtest_pose.jsonl) and on the real stills of tests/test_pose_and_falls.py (upright and
turned by 90 degrees), once on whole frames and once on person crops, attaches poses to the person boxes
the same way, and reports: people given keypoints, keypoint distance (pixels, points scored >= 0.3 in both),
torso angle difference, fall/fighting alerts through the real alert-router pipeline, and pose CPU time.
Usage: python -m bench.pose_crops [--every 5] [--limit 0]."""

from __future__ import annotations

import argparse
import time

import av
import numpy as np
from PIL import Image

from bench.pose_bench import CLIP
from services.alert_router.config import CameraConfig
from services.alert_router.model import AlertKind, Det, FrameDetections, FrameRef
from services.alert_router.pipeline import CameraPipeline
from services.alert_router.rules.fall import torso_angle_deg
from services.detector.config import DetectorModelConfig
from services.detector.detector import Detector
from services.detector.pose import PoseEstimator, PoseModelConfig, PoseStage
from tests.assets_fetch import DEFAULT_CACHE_DIR, fetch_stills

T0 = 1_767_614_400_000
WHOLE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


def clip_frames(every: int, limit: int) -> list[np.ndarray]:
    frames = []
    with av.open(str(CLIP)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % every == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if limit and len(frames) == limit:
                break
    return frames


def run_stage(crops: bool, images: list[np.ndarray], results: list) -> tuple[list, float]:
    stage = PoseStage(PoseEstimator(PoseModelConfig(person_crops=crops)), needs_pose=lambda _camera: True)
    stage.add_keypoints(["c"], images[:1], results[:1])  # warm-up
    started = time.process_time()
    out = []
    for start in range(0, len(images), 8):  # the detector's batch size
        chunk = slice(start, start + 8)
        out.extend(stage.add_keypoints(["c"] * len(images[chunk]), images[chunk], results[chunk]))
    return out, time.process_time() - started


def compare(name: str, images: list[np.ndarray], results: list, alerts: bool) -> None:
    whole, whole_cpu = run_stage(False, images, results)
    crops, crops_cpu = run_stage(True, images, results)
    people = both = only_whole = only_crops = 0
    distances: list[float] = []
    angle_diffs: list[float] = []
    for image, before, after in zip(images, whole, crops, strict=True):
        height, width = image.shape[:2]
        for a, b in zip(before, after, strict=True):
            if a.class_name != "person":
                continue
            people += 1
            if a.keypoints is None or b.keypoints is None:
                only_whole += a.keypoints is not None
                only_crops += b.keypoints is not None
                continue
            both += 1
            for p, q in zip(a.keypoints, b.keypoints, strict=True):
                if p.score >= 0.3 and q.score >= 0.3:
                    distances.append(float(np.hypot((p.x - q.x) * width, (p.y - q.y) * height)))
            angles = [torso_angle_deg([[k.x, k.y, k.score] for k in o.keypoints], width / height, 0.3) for o in (a, b)]
            if None not in angles:
                angle_diffs.append(abs(angles[0] - angles[1]))  # type: ignore[operator]
    d = np.array(distances or [0.0])
    print(f"## {name}: {len(images)} frames, {people} person boxes")
    print(f"- keypoints whole/crops/both: {both + only_whole}/{both + only_crops}/{both}")
    print(
        f"- keypoint distance px (score>=0.3 in both, n={len(distances)}): median {np.median(d):.2f}, "
        f"p90 {np.percentile(d, 90):.2f}, p99 {np.percentile(d, 99):.2f}, max {d.max():.1f}"
    )
    if angle_diffs:
        print(
            f"- torso angle difference deg (n={len(angle_diffs)}): median {np.median(angle_diffs):.1f}, "
            f"p90 {np.percentile(angle_diffs, 90):.1f}, max {max(angle_diffs):.1f}"
        )
    print(f"- pose CPU s: whole {whole_cpu:.2f}, crops {crops_cpu:.2f} ({whole_cpu / max(crops_cpu, 1e-9):.1f}x less)")
    if alerts:
        for label, frames in (("whole", whole), ("crops", crops)):
            print(f"- fall/fighting alerts ({label}): {pipeline_alerts(images, frames)}")


def pipeline_alerts(images: list[np.ndarray], frames: list) -> list[str]:
    camera = CameraConfig.model_validate(
        {
            "camera_id": "c",
            "zones": [{"name": "all", "polygon": WHOLE, "rules": [{"type": "fall"}, {"type": "fighting"}]}],
        }
    )
    pipeline = CameraPipeline(camera)
    height, width = images[0].shape[:2]
    found = []
    for i, objects in enumerate(frames):
        record = FrameDetections("c", i, T0 + i * 500, FrameRef("f", 0, i), width, height, [Det.of(o) for o in objects])
        found += [
            f"{e.rule_type} at {(e.started_at - T0) / 1000:.1f} s"
            for e in pipeline.process(record)
            if e.kind is AlertKind.NEW
        ]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=5, help="every n-th clip frame (5: 2 fps)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many clip frames (0: all)")
    args = parser.parse_args()
    detector = Detector(DetectorModelConfig())
    stills = [np.asarray(Image.open(path).convert("RGB")) for path in fetch_stills(DEFAULT_CACHE_DIR).values()]
    stills += [np.ascontiguousarray(np.rot90(image)) for image in stills]
    compare("stills (upright and turned 90 degrees)", stills, [detector.detect([s])[0] for s in stills], False)
    frames = clip_frames(args.every, args.limit)
    compare("vtest at 2 fps", frames, detector.detect(frames), True)
    detector.close()


if __name__ == "__main__":
    main()
