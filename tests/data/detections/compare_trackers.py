"""Compare our time-aware tracker with Roboflow `trackers` (ByteTrack, SORT, OC-SORT) on recorded detections.

Not a test (no ground-truth annotations exist for vtest): a measurement behind the tracker choice.
Reference identities come from ByteTrack run on EVERY frame (10 fps, where IoU tracking is easy), i.e. the
reference is biased towards ByteTrack, not towards our tracker. Each tracker then sees only a subsample
(2 fps, 1 fps, 0.5 fps, and irregular 0.1-2 s gaps as motion gating produces) and is scored against the
reference on the frames it saw: identity switches (IDSW), IDF1 and coverage of reference boxes.

Usage (the `trackers` package needs opencv-python, so it is not a project dependency):
    python -m venv /tmp/cmp && /tmp/cmp/bin/pip install trackers==2.6.1
    .venv/bin/python tests/data/detections/compare_trackers.py --extra-site /tmp/cmp/lib/python3.11/site-packages
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from services.alert_router.config import TrackerSettings  # noqa: E402
from services.alert_router.model import Det, FrameDetections, FrameRef  # noqa: E402
from services.alert_router.tracking import TimeAwareTracker  # noqa: E402

Box = tuple[float, float, float, float]
# A tracker adapter: (boxes, scores, time in s) -> {box: track id} for the boxes it reports as tracked.
Adapter = Callable[[list[Box], list[float], float], dict[Box, int]]


def load(path: Path) -> tuple[dict, list[dict]]:
    with path.open(encoding="utf-8") as handle:
        header = json.loads(handle.readline())
        rows = [json.loads(line) for line in handle]
    return header, rows


def person_boxes(row: dict, header: dict) -> tuple[list[Box], list[float]]:
    person_id = next(int(k) for k, v in header["classes"].items() if v == "person")
    dets = [d for d in row["dets"] if d[0] == person_id]
    return [tuple(d[2:6]) for d in dets], [d[1] for d in dets]


def ours(width: int, height: int, settings: TrackerSettings | None = None) -> Adapter:
    tracker = TimeAwareTracker(settings)
    seq = [0]

    def step(boxes: list[Box], scores: list[float], t: float) -> dict[Box, int]:
        seq[0] += 1
        dets = [Det(*b, 0, "person", s) for b, s in zip(boxes, scores, strict=True)]
        frame = FrameDetections("vtest", seq[0], round(t * 1000), FrameRef("f", 0, seq[0]), width, height, dets)
        return {(tr.x1, tr.y1, tr.x2, tr.y2): tr.track_id for tr in tracker.update(frame)}

    return step


def roboflow(kind: str, width: int, height: int, timestamps: bool, **options: object) -> Adapter:
    import supervision as sv
    import trackers

    cls = {"bytetrack": trackers.ByteTrackTracker, "sort": trackers.SORTTracker, "ocsort": trackers.OCSORTTracker}[kind]
    tracker = cls(**options)

    def step(boxes: list[Box], scores: list[float], t: float) -> dict[Box, int]:
        scale = np.array([width, height, width, height], dtype=float)
        xyxy = np.array(boxes, dtype=float).reshape(-1, 4) * scale
        detections = sv.Detections(
            xyxy=xyxy, confidence=np.array(scores, dtype=float), class_id=np.zeros(len(boxes), dtype=int)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = tracker.update(detections, timestamp=t if timestamps else None)
        found: dict[Box, int] = {}
        for row, tid in zip(out.xyxy, out.tracker_id, strict=True):
            if tid < 0:
                continue
            # Map back to the exact input box (outputs are the input boxes, possibly reordered).
            index = int(np.argmin(np.abs(xyxy - row).sum(axis=1)))
            found[boxes[index]] = int(tid)
        return found

    return step


def _diou() -> object:
    import trackers

    return trackers.DIoU()


def run(adapter: Adapter, rows: list[dict], header: dict, indices: list[int]) -> dict[int, dict[Box, int]]:
    result: dict[int, dict[Box, int]] = {}
    for i in indices:
        boxes, scores = person_boxes(rows[i], header)
        result[i] = adapter(boxes, scores, rows[i]["t_ms"] / 1000.0)
    return result


def score(reference: dict[int, dict[Box, int]], predicted: dict[int, dict[Box, int]]) -> dict[str, float]:
    switches = 0
    last_pred: dict[int, int] = {}
    pairs: dict[tuple[int, int], int] = defaultdict(int)
    gt_count = pred_count = covered = 0
    for i in sorted(predicted):
        ref = reference.get(i, {})
        pred = predicted[i]
        gt_count += len(ref)
        pred_count += len(pred)
        for box, gt_id in ref.items():
            pred_id = pred.get(box)
            if pred_id is None:
                continue
            covered += 1
            pairs[(gt_id, pred_id)] += 1
            if gt_id in last_pred and last_pred[gt_id] != pred_id:
                switches += 1
            last_pred[gt_id] = pred_id
    gt_ids = sorted({g for g, _ in pairs})
    pred_ids = sorted({p for _, p in pairs})
    if gt_ids:
        matrix = np.zeros((len(gt_ids), len(pred_ids)))
        for (g, p), n in pairs.items():
            matrix[gt_ids.index(g), pred_ids.index(p)] = n
        rows, cols = linear_sum_assignment(-matrix)
        idtp = matrix[rows, cols].sum()
    else:
        idtp = 0.0
    idf1 = 2 * idtp / (gt_count + pred_count) if gt_count + pred_count else 0.0
    return {"IDSW": switches, "IDF1": round(idf1, 3), "coverage": round(covered / max(gt_count, 1), 3)}


def schedules(count: int) -> dict[str, list[int]]:
    plans = {
        "10fps (all)": list(range(count)),
        "2fps": list(range(0, count, 5)),
        "1fps": list(range(0, count, 10)),
        "0.5fps": list(range(0, count, 20)),
    }
    for seed in range(3):
        rng = random.Random(seed)
        picks, i = [], 0
        while i < count:
            picks.append(i)
            i += rng.randint(1, 20)  # 0.1-2 s gaps at 10 fps source
        plans[f"irregular#{seed}"] = picks
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=Path, default=Path(__file__).with_name("vtest.jsonl"))
    parser.add_argument("--extra-site", type=Path, help="site-packages holding the `trackers` package")
    args = parser.parse_args()
    if args.extra_site:
        sys.path.append(str(args.extra_site))
    header, rows = load(args.detections)
    width, height = header["width"], header["height"]
    every = list(range(len(rows)))
    buffer_4s = 120  # trackers express the lost-track budget in 30 fps frames: 120 -> 4 s, like our max_age_s
    budget = {"frame_rate": header["fps"], "lost_track_buffer": buffer_4s}
    bytetrack = {**budget, "track_activation_threshold": 0.4, "high_conf_det_threshold": 0.4}

    def library(kind: str, timestamps: bool, **options: object) -> Callable[[], Adapter]:
        return lambda: roboflow(kind, width, height, timestamps, **options)

    reference = run(library("bytetrack", False, **bytetrack)(), rows, header, every)
    contenders: dict[str, Callable[[], Adapter]] = {
        "ours (time-aware)": lambda: ours(width, height),
        "ByteTrack+timestamps": library("bytetrack", True, **bytetrack),
        # DIoU < 0 for separate boxes: lets sparse frames associate. (A fresh DIoU per run, as before.)
        "ByteTrack+ts+DIoU": lambda: roboflow(
            "bytetrack", width, height, True, **bytetrack, iou=_diou(), minimum_iou_threshold=-0.3
        ),
        "ByteTrack fixed-rate": library("bytetrack", False, **bytetrack),
        "SORT+timestamps": library(
            "sort", True, **budget, track_activation_threshold=0.4, minimum_consecutive_frames=2
        ),
        "OC-SORT+timestamps": library(
            "ocsort", True, **budget, high_conf_det_threshold=0.4, minimum_consecutive_frames=2
        ),
    }
    print(f"{'schedule':<14} {'tracker':<22} {'frames':>6} {'IDSW':>5} {'IDF1':>6} {'coverage':>8}")
    for plan, indices in schedules(len(rows)).items():
        for name, make in contenders.items():
            metrics = score(reference, run(make(), rows, header, indices))
            row = f"{plan:<14} {name:<22} {len(indices):>6} {metrics['IDSW']:>5}"
            print(f"{row} {metrics['IDF1']:>6.3f} {metrics['coverage']:>8.3f}")


if __name__ == "__main__":
    main()
