"""Masking recall on hand-annotated real stills (tests/data/masking/stills.yaml): faces, heads of the
people the detector finds, licence plates, false masks and cost per image, with the production settings.

    PYTHONPATH=. python bench/masking_stills.py [--half tune|report|all] [--upscale 1] [--json out.json]

A face or plate counts as found only when it is fully masked: at least 95 % of its annotated box lies
under the regions the masking pixelates (a half-hidden plate can still be read).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from libs.masking import SNAPSHOT_FACE_GROW as FACE_GROW
from libs.masking import FaceDetector, PlateDetector, Region, head_regions, vehicle_regions

REPO = Path(__file__).resolve().parents[1]
ANNOTATIONS = REPO / "tests" / "data" / "masking" / "stills.yaml"
FULLY_MASKED = 0.95


@dataclass
class StillResult:
    name: str
    half: str
    size: str
    faces_present: int
    faces_by_centerface: int  # fully masked by CenterFace's boxes alone
    faces_masked: int  # fully masked by everything (CenterFace + heads of detected people + plates)
    plates_present: int
    plates_masked: int
    plate_regions: int
    false_plate_regions: int  # plate regions touching no annotated plate
    masked_share: float  # share of the image pixelated
    ms_faces: float  # CPU ms (this process; ONNX Runtime on one thread): wall time measures the neighbours
    ms_people: float
    ms_plates: float


def load_annotations() -> dict[str, dict]:
    images: dict[str, dict] = yaml.safe_load(ANNOTATIONS.read_text())["images"]
    return images


def coverage(box: list[int], mask: np.ndarray) -> float:
    x1, y1, x2, y2 = box
    return float(mask[y1:y2, x1:x2].mean())


def union(regions: list[Region], height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for r in regions:
        mask[r.y1 : r.y2, r.x1 : r.x2] = True
    return mask


def touches(region: Region, boxes: list[list[int]]) -> bool:
    return any(region.x1 < x2 and x1 < region.x2 and region.y1 < y2 and y1 < region.y2 for x1, y1, x2, y2 in boxes)


def measure_still(
    name: str,
    rgb: np.ndarray,
    truth: dict,
    faces: FaceDetector,
    people: Callable[[np.ndarray], list[dict]],
    plates: PlateDetector,
) -> StillResult:
    height, width = rgb.shape[:2]
    started = time.process_time()
    face_regions = [f.grown(FACE_GROW, width, height) for f in faces.detect(rgb)]
    after_faces = time.process_time()
    objects = people(rgb)
    after_people = time.process_time()
    plate_regions = plates.detect(rgb, vehicle_regions(objects, width, height))
    after_plates = time.process_time()
    heads = head_regions(objects, width, height)
    everything = union(face_regions + heads + plate_regions, height, width)
    by_centerface = union(face_regions, height, width)
    plate_mask = union(plate_regions, height, width)
    return StillResult(
        name=name,
        half=truth["half"],
        size=f"{width}x{height}",
        faces_present=len(truth["faces"]),
        faces_by_centerface=sum(coverage(b, by_centerface) >= FULLY_MASKED for b in truth["faces"]),
        faces_masked=sum(coverage(b, everything) >= FULLY_MASKED for b in truth["faces"]),
        plates_present=len(truth["plates"]),
        plates_masked=sum(coverage(b, plate_mask) >= FULLY_MASKED for b in truth["plates"]),
        plate_regions=len(plate_regions),
        false_plate_regions=sum(not touches(r, truth["plates"]) for r in plate_regions),
        masked_share=round(float(everything.mean()), 3),
        ms_faces=round((after_faces - started) * 1000),
        ms_people=round((after_people - after_faces) * 1000),
        ms_plates=round((after_plates - after_people) * 1000),
    )


def load_stills() -> dict[str, np.ndarray]:
    from tests.assets_fetch import fetch_plate_stills, fetch_stills

    paths = {**fetch_stills(), **fetch_plate_stills()}
    return {name: np.asarray(Image.open(paths[name]).convert("RGB")) for name in load_annotations()}


def measure(half: str = "all", upscale: int = 1) -> list[StillResult]:
    from libs.video_masking import model_people

    annotations = load_annotations()
    stills = load_stills()
    faces, people, plates = FaceDetector(upscale=upscale), model_people(), PlateDetector()
    first = next(iter(annotations))
    measure_still(first, stills[first], annotations[first], faces, people, plates)  # warm-up, not timed
    return [
        measure_still(name, stills[name], truth, faces, people, plates)
        for name, truth in annotations.items()
        if half in ("all", truth["half"])
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--half", choices=["tune", "report", "all"], default="all")
    parser.add_argument("--upscale", type=int, default=1, help="CenterFace upscaling (dispatcher masking_upscale)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = measure(args.half, args.upscale)
    print(
        "| image | half | size | faces: CenterFace / all masks / present | plates masked / present "
        "| plate regions (false) | image masked | ms faces + people + plates |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.name} | {r.half} | {r.size} | {r.faces_by_centerface} / {r.faces_masked} / {r.faces_present} "
            f"| {r.plates_masked} / {r.plates_present} | {r.plate_regions} ({r.false_plate_regions}) "
            f"| {r.masked_share:.0%} | {r.ms_faces} + {r.ms_people} + {r.ms_plates} |"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")


if __name__ == "__main__":
    main()
