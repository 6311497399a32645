"""Detector model variants on this CPU: FP32 vs INT8 (QDQ, QOperator) and input 512 / 384 / 320.

Speed: every variant runs in the same rounds, in rotating order (the machine is shared, so only
same-round ratios mean anything): the bare session.run on a preprocessed tensor, and the whole
Detector.detect_jpegs (decode + preprocess + inference + NMS) on the same frames, at batch 1 and 8.
Accuracy: detections of each variant against FP32 at 512 on frames of the second half of the sample
clip (the INT8 model was calibrated on the first half) and on the two real stills the tests use.

    PYTHONPATH=. .venv/bin/python -m bench.detector_variants [--rounds 8] [--out docs/benchmarks/detector-variants]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, RESULTS_DIR, SAMPLE_H264
from libs.records import DetectedObject

FP32 = REPO / "models" / "centernet-mobilenetv3-coco.onnx"
INT8 = REPO / "models" / "centernet-mobilenetv3-coco-int8.onnx"
BUILD_DIR = REPO / ".cache" / "bench-variants"
EVAL_FRAMES = 40
MATCH_IOU = 0.5
VEHICLES = ("car", "truck", "bus")


@dataclass(frozen=True)
class Variant:
    name: str
    path: Path
    input_size: int


def build_variants() -> list[Variant]:
    """The committed FP32 and INT8 files plus the QOperator INT8 and the any-size FP32 graph, built
    here by models/quantize_centernet.py (the same script, other options)."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    fp32_any, qoperator = BUILD_DIR / "fp32-any-size.onnx", BUILD_DIR / "int8-qoperator.onnx"
    if not (fp32_any.is_file() and qoperator.is_file()):
        subprocess.run(
            [
                sys.executable,
                str(REPO / "models" / "quantize_centernet.py"),
                "--format",
                "qoperator",
                "--output",
                str(qoperator),
                "--fp32-dynamic-output",
                str(fp32_any),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return [
        Variant("fp32-512", FP32, 512),
        Variant("int8-qdq-512", INT8, 512),
        Variant("int8-qoperator-512", qoperator, 512),
        Variant("fp32-384", fp32_any, 384),
        Variant("int8-qdq-384", INT8, 384),
        Variant("fp32-320", fp32_any, 320),
        Variant("int8-qdq-320", INT8, 320),
    ]


def clip_jpegs(first: float, last: float, count: int) -> list[bytes]:
    """JPEGs (q80, as the frame-sampler makes them) of evenly spaced frames of part of the sample clip."""
    import av
    import simplejpeg  # type: ignore[import-untyped]

    with av.open(str(SAMPLE_H264)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    start, stop = int(len(frames) * first), int(len(frames) * last)
    picks = np.linspace(start, stop - 1, count).round().astype(int)
    return [
        simplejpeg.encode_jpeg(np.ascontiguousarray(frames[i]), quality=80, colorspace="RGB", fastdct=True)
        for i in picks
    ]


def iou(a: DetectedObject, b: DetectedObject) -> float:
    width = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    height = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = width * height
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def match(
    reference: list[DetectedObject], candidate: list[DetectedObject]
) -> list[tuple[DetectedObject, DetectedObject, float]]:
    """Greedy one-to-one matching, reference boxes by descending score, at IoU >= MATCH_IOU."""
    free = list(candidate)
    pairs = []
    for ref in sorted(reference, key=lambda d: -d.score):
        best = max(free, key=lambda c: iou(ref, c), default=None)
        if best is not None and iou(ref, best) >= MATCH_IOU:
            pairs.append((ref, best, iou(ref, best)))
            free.remove(best)
    return pairs


def agreement(
    reference: list[list[DetectedObject]],
    candidate: list[list[DetectedObject]],
    classes: tuple[str, ...],
    min_reference_score: float = 0.0,
) -> dict[str, Any]:
    """Recall of the reference's boxes of `classes` (same class, IoU >= 0.5), IoU and score change.
    With `min_reference_score`, only reference boxes that confident count (the variant's at 0.2 may match)."""
    ref_total = cand_total = 0
    ious: list[float] = []
    score_deltas: list[float] = []
    for ref_frame, cand_frame in zip(reference, candidate, strict=False):
        refs = [d for d in ref_frame if d.class_name in classes and d.score >= min_reference_score]
        cands = [d for d in cand_frame if d.class_name in classes]
        ref_total, cand_total = ref_total + len(refs), cand_total + len(cands)
        for ref, cand, overlap in match(refs, [c for c in cands]):
            if ref.class_name == cand.class_name:
                ious.append(overlap)
                score_deltas.append(cand.score - ref.score)
    return {
        "reference_boxes": ref_total,
        "variant_boxes": cand_total,
        "matched": len(ious),
        "recall_of_fp32": round(len(ious) / ref_total, 3) if ref_total else None,
        "precision_vs_fp32": round(len(ious) / cand_total, 3) if cand_total else None,
        "mean_iou": round(statistics.fmean(ious), 3) if ious else None,
        "mean_score_delta": round(statistics.fmean(score_deltas), 4) if score_deltas else None,
        "mean_abs_score_delta": round(statistics.fmean(abs(d) for d in score_deltas), 4) if score_deltas else None,
    }


def still_summary(detections: list[DetectedObject]) -> list[list[Any]]:
    return [
        [d.class_name, round(d.score, 2), [round(v, 2) for v in (d.x1, d.y1, d.x2, d.y2)]]
        for d in sorted(detections, key=lambda d: -d.score)
    ]


def measure(variants: list[Variant], rounds: int, batches: tuple[int, ...]) -> dict[str, Any]:
    from services.detector.config import DetectorModelConfig
    from services.detector.detector import Detector
    from services.detector.model import run_batch
    from tests.assets_fetch import DEFAULT_CACHE_DIR, fetch_stills

    detectors = {
        v.name: Detector(DetectorModelConfig(path=v.path, input_size=v.input_size, max_batch_size=8)) for v in variants
    }
    for detector in detectors.values():
        detector.warmup(runs=1)

    # Accuracy: evaluation frames (second half of the clip) and the real stills.
    eval_jpegs = clip_jpegs(0.5, 1.0, EVAL_FRAMES)
    stills = {name: path.read_bytes() for name, path in fetch_stills(DEFAULT_CACHE_DIR).items()}
    detections = {name: d.detect_jpegs(eval_jpegs).results for name, d in detectors.items()}
    still_detections = {
        name: {still: d.detect_jpegs([payload]).results[0] for still, payload in stills.items()}
        for name, d in detectors.items()
    }
    reference = detections["fp32-512"]
    accuracy = {
        name: {
            "person": agreement(reference, found, ("person",)),
            "person_fp32_score_at_least_0.3": agreement(reference, found, ("person",), 0.3),
            "person_fp32_score_at_least_0.4": agreement(reference, found, ("person",), 0.4),
            "vehicle": agreement(reference, found, VEHICLES),
            "all_classes": agreement(reference, found, tuple(d.class_name for f in reference for d in f)),
        }
        for name, found in detections.items()
    }
    still_accuracy = {
        name: {
            still: {
                "agreement_with_fp32_512": agreement(
                    [still_detections["fp32-512"][still]],
                    [found],
                    tuple({d.class_name for d in still_detections["fp32-512"][still]}),
                ),
                "detections": still_summary(found),
            }
            for still, found in by_still.items()
        }
        for name, by_still in still_detections.items()
    }

    # Speed: rotating order within each round; ratios are taken within the round.
    speed: dict[str, Any] = {}
    for batch in batches:
        jpeg_batch = (eval_jpegs * 2)[:batch]
        tensors = {v.name: detectors[v.name].prepare_jpegs(jpeg_batch).batches[0].tensor for v in variants}
        bare: dict[str, list[float]] = {v.name: [] for v in variants}
        full: dict[str, list[float]] = {v.name: [] for v in variants}
        for round_index in range(rounds):
            order = variants[round_index % len(variants) :] + variants[: round_index % len(variants)]
            for variant in order:
                detector = detectors[variant.name]
                started = time.perf_counter()
                run_batch(detector.model.session, tensors[variant.name])
                bare[variant.name].append((time.perf_counter() - started) * 1000 / batch)
                started = time.perf_counter()
                detector.detect_jpegs(jpeg_batch)
                full[variant.name].append((time.perf_counter() - started) * 1000 / batch)
        speed[f"batch_{batch}"] = {
            v.name: {
                "bare_ms_per_frame_median": round(statistics.median(bare[v.name]), 1),
                "detector_ms_per_frame_median": round(statistics.median(full[v.name]), 1),
                "speedup_vs_fp32_512_bare": round(
                    statistics.median(ref / mine for ref, mine in zip(bare["fp32-512"], bare[v.name], strict=False)), 3
                ),
                "speedup_vs_fp32_512_detector": round(
                    statistics.median(ref / mine for ref, mine in zip(full["fp32-512"], full[v.name], strict=False)), 3
                ),
                "bare_over_detector": round(
                    statistics.median(b / f for b, f in zip(bare[v.name], full[v.name], strict=False)), 3
                ),
            }
            for v in variants
        }
    for detector in detectors.values():
        detector.close()
    return {"speed": speed, "accuracy_on_clip_eval_frames": accuracy, "stills": still_accuracy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "detector-variants.json")
    args = parser.parse_args(argv)
    import onnxruntime  # type: ignore[import-untyped]

    variants = build_variants()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    started = time.time()
    results = measure(variants, args.rounds, tuple(args.batches))
    report = {
        "what": "detector model variants, interleaved in one run; ratios are same-round",
        "machine": {
            "cpus": len(__import__("os").sched_getaffinity(0)),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "loadavg_before": load_before,
            "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        },
        "rounds": args.rounds,
        "eval_frames": f"{EVAL_FRAMES} evenly spaced in the second half of {SAMPLE_H264.name}",
        "variants": {v.name: {"file": str(v.path.relative_to(REPO)), "input_size": v.input_size} for v in variants},
        "seconds": round(time.time() - started, 1),
        **results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["speed"], indent=1))
    for name, found in report["accuracy_on_clip_eval_frames"].items():
        print(
            name,
            {
                kind: (numbers["recall_of_fp32"], numbers["mean_iou"], numbers["mean_score_delta"])
                for kind, numbers in found.items()
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
