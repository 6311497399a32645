"""Pose stage cost: frames/s of `PoseEstimator.estimate` (letterbox + session.run + decode) vs bare
`session.run` on the same prepared tensors, on real vtest frames, per input size. CPU here; run it on a
GPU host for GPU numbers. Usage: python -m bench.pose_bench [--frames 40] [--sizes 256 384 512]."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np

from services.detector.pose import PoseEstimator, PoseModelConfig

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
    print("| input px | people found per frame | stage frames/s | bare session.run frames/s | stage overhead |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        estimator = PoseEstimator(PoseModelConfig(input_size=size))
        estimator.estimate(frames[:2])  # warm-up
        started = time.perf_counter()
        poses = estimator.estimate(frames)
        stage_s = time.perf_counter() - started
        tensor = np.stack([estimator._place(f)[0] for f in frames])
        started = time.perf_counter()
        estimator.run_session(tensor)
        bare_s = time.perf_counter() - started
        people = sum(len(p) for p in poses) / len(frames)
        print(
            f"| {size} | {people:.1f} | {len(frames) / stage_s:.1f} | {len(frames) / bare_s:.1f} | "
            f"{(stage_s / bare_s - 1) * 100:.0f} % |"
        )


if __name__ == "__main__":
    main()
