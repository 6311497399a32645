"""Record real detections off the sample footage into tests/data/detections/vtest.jsonl.

Runs the project's detector (services.detector.detector.Detector, model models/centernet-mobilenetv3-coco.onnx)
on samples/vtest-h264.mp4 and writes one JSON line per frame:

    line 1 (header): {"source", "source_sha256", "model", "model_sha256", "width", "height", "fps",
                      "min_score", "classes": {"<class id>": "<name>"}}
    then per frame:  {"i": frame index, "t_ms": presentation time in ms,
                      "dets": [[class_id, score, x1, y1, x2, y2], ...]}   (normalised 0..1, 4 decimals)

Usage (repository root):
    .venv/bin/python tests/data/detections/record.py                 # every frame (10 fps)
    .venv/bin/python tests/data/detections/record.py --every 5       # 2 fps
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

DEFAULT_VIDEO = REPO / "samples" / "vtest-h264.mp4"
DEFAULT_MODEL = REPO / "models" / "centernet-mobilenetv3-coco.onnx"
DEFAULT_OUTPUT = Path(__file__).with_name("vtest.jsonl")
# What the alert rules look at: people, vehicles and luggage.
KEPT_CLASSES = {"person", "bicycle", "car", "motorcycle", "bus", "truck", "backpack", "handbag", "suitcase"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--every", type=int, default=1, help="keep every Nth frame (1 = all)")
    parser.add_argument("--min-score", type=float, default=0.3)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    from services.detector.config import DetectorModelConfig
    from services.detector.detector import Detector
    from services.detector.model import file_sha256

    # The detector's own defaults (letterbox resize, class-aware NMS) are what production runs.
    detector = Detector(DetectorModelConfig(path=args.model, score_threshold=args.min_score))
    classes: dict[str, str] = {}
    lines: list[str] = []
    started = time.monotonic()
    with av.open(str(args.video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) / args.every
        width, height = stream.codec_context.width, stream.codec_context.height
        pending: list[tuple[int, int, object]] = []

        def flush() -> None:
            results = detector.detect([image for _, _, image in pending])
            for (index, t_ms, _), detections in zip(pending, results, strict=True):
                dets = []
                for d in detections:
                    if d.class_name not in KEPT_CLASSES or d.score < args.min_score:
                        continue
                    box = [round(min(max(v, 0.0), 1.0), 4) for v in (d.x1, d.y1, d.x2, d.y2)]
                    if box[2] <= box[0] or box[3] <= box[1]:
                        continue  # degenerate after rounding
                    classes[str(d.class_id)] = d.class_name
                    dets.append([d.class_id, round(d.score, 4), *box])
                lines.append(json.dumps({"i": index, "t_ms": t_ms, "dets": dets}, separators=(",", ":")))
            pending.clear()

        for index, frame in enumerate(container.decode(stream)):
            if index % args.every:
                continue
            t_ms = round(float(frame.time) * 1000) if frame.time is not None else round(index * 1000 / fps)
            pending.append((index, t_ms, frame.to_ndarray(format="rgb24")))
            if len(pending) >= args.batch:
                flush()
        if pending:
            flush()
    header = {
        "source": str(args.video.relative_to(REPO)) if args.video.is_relative_to(REPO) else args.video.name,
        "source_sha256": file_sha256(args.video),
        "model": args.model.name,
        "detector": {"resize_mode": detector.cfg.resize_mode, "nms_iou": detector.cfg.nms_iou},
        "model_sha256": file_sha256(args.model),
        "width": width,
        "height": height,
        "fps": round(fps, 3),
        "min_score": args.min_score,
        "classes": dict(sorted(classes.items(), key=lambda item: int(item[0]))),
    }
    args.output.write_text(json.dumps(header) + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    elapsed = time.monotonic() - started
    print(f"{len(lines)} frames -> {args.output} ({args.output.stat().st_size} bytes) in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
