"""Face-masking recall and cost per frame on the hand-annotated stills (tests/data/masking/faces.json).

    PYTHONPATH=. python bench/masking_recall.py [--upscale 1 2] [--threads 1]

A face counts as found when a detected box covers at least half of the annotated box (what matters for
masking is that the face is hidden, not a tight box). Prints one Markdown table row per setting.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from libs.masking import FaceDetector, Region

REPO = Path(__file__).resolve().parents[1]
ANNOTATIONS = REPO / "tests" / "data" / "masking" / "faces.json"


def load_image(name: str, stills: dict[str, Path]) -> np.ndarray:
    if "#" in name:
        video, index = name.split("#")
        with av.open(str(REPO / "samples" / video)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == int(index):
                    return frame.to_ndarray(format="rgb24")
        raise ValueError(f"{video} has no frame {index}")
    return np.asarray(Image.open(stills[name]).convert("RGB"))


def covered(face: list[int], found: list[Region], grow: float, width: int, height: int) -> bool:
    x1, y1, x2, y2 = face
    area = (x2 - x1) * (y2 - y1)
    for region in (r.grown(grow, width, height) for r in found):
        inter = max(0, min(x2, region.x2) - max(x1, region.x1)) * max(0, min(y2, region.y2) - max(y1, region.y1))
        if inter >= area / 2:
            return True
    return False


def measure(
    detector: FaceDetector,
    images: dict[str, np.ndarray],
    faces: dict[str, list[list[int]]],
    grow: float = 1.3,
    repeats: int = 3,
) -> dict[str, tuple[int, int, float]]:
    """name → (faces found, faces present, median seconds per frame)."""
    results = {}
    for name, rgb in images.items():
        times, found = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            found = detector.detect(rgb)
            times.append(time.perf_counter() - started)
        height, width = rgb.shape[:2]
        hits = sum(covered(face, found, grow, width, height) for face in faces[name])
        results[name] = (hits, len(faces[name]), float(np.median(times)))
    return results


def main() -> None:
    from tests.assets_fetch import fetch_stills

    parser = argparse.ArgumentParser()
    parser.add_argument("--upscale", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    faces = json.loads(ANNOTATIONS.read_text())["images"]
    stills = fetch_stills()
    images = {name: load_image(name, stills) for name in faces}
    print("| upscale | image | size | faces found / present | ms per frame |")
    print("|---|---|---|---|---|")
    for upscale in args.upscale:
        detector = FaceDetector(threads=args.threads, upscale=upscale)
        for name, (hits, present, seconds) in measure(detector, images, faces).items():
            h, w = images[name].shape[:2]
            print(f"| {upscale}x | {name} | {w}x{h} | {hits} / {present} | {seconds * 1000:.0f} |")


if __name__ == "__main__":
    main()
