"""Pose stage cost: frames/s of `PoseEstimator.estimate` (letterbox + session.run + decode) vs bare
`session.run` on the same prepared whole-frame tensors, on real vtest frames, per input size; and of the
production path, `PoseStage` on person crops around the real detector's boxes (crop + resize + one
session.run per crop + decode + matching), against the same bare whole-frame `session.run`. CPU here; run
it on a GPU host for GPU numbers. Usage: python -m bench.pose_bench [--frames 40] [--sizes 256 384 512]."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np

from services.detector.config import DetectorModelConfig
from services.detector.detector import Detector
from services.detector.pose import PoseEstimator, PoseModelConfig, PoseStage

CLIP = Path(__file__).resolve().parents[1] / "samples" / "vtest-h264.mp4"


def vtest_frames(count: int) -> list[np.ndarray]:
    frames = []
    with av.open(str(CLIP)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 10 == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512])
    args = parser.parse_args()
    frames = vtest_frames(args.frames)
    detector = Detector(DetectorModelConfig())
    detections = detector.detect(frames)
    detector.close()
    print(
        "| input px | path | poses found per frame | people given keypoints per frame | stage frames/s | bare whole-frame session.run frames/s |"
    )
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        estimator = PoseEstimator(PoseModelConfig(input_size=size, person_crops=False))
        tensor = np.stack([estimator._place(f)[0] for f in frames])
        estimator.run_session(tensor[:2])  # warm-up
        started = time.perf_counter()
        estimator.run_session(tensor)
        bare = f"{len(frames) / (time.perf_counter() - started):.1f}"
        found = sum(len(p) for p in estimator.estimate(frames)) / len(frames)
        for label, crops in (("whole frame", False), ("person crops", True)):
            cfg = PoseModelConfig(input_size=size, person_crops=crops)
            stage = PoseStage(PoseEstimator(cfg), needs_pose=lambda _camera: True)
            stage.add_keypoints(["c"] * 2, frames[:2], detections[:2])  # warm-up
            started = time.perf_counter()
            out = stage.add_keypoints(["c"] * len(frames), frames, detections)
            stage_s = time.perf_counter() - started
            people = sum(o.keypoints is not None for objects in out for o in objects) / len(frames)
            poses = f"{found:.1f}" if not crops else "–"
            print(f"| {size} | {label} | {poses} | {people:.1f} | {len(frames) / stage_s:.1f} | {bare} |")


if __name__ == "__main__":
    main()
