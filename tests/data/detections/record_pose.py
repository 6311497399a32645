# Run: PYTHONPATH=. .venv/bin/python tests/data/detections/record_pose.py   (~2 min on 2 cores)
"""Records tests/data/detections/vtest_pose.jsonl and prints the measurements behind the fall and fighting
defaults (docs/quality.md): limb speeds (body heights/s, relative to torso) and torso angles of the walking people of vtest, 2 fps,
through the real detector, pose stage (512 px) and tracker."""

import json
from pathlib import Path

import av
import numpy as np

from services.alert_router.model import Det, FrameDetections, FrameRef
from services.alert_router.rules.fall import torso_angle_deg
from services.alert_router.rules.fighting import limb_offsets, limb_speed
from services.alert_router.tracking import TimeAwareTracker
from services.detector.config import DetectorModelConfig
from services.detector.detector import Detector
from services.detector.pose import PoseEstimator, PoseModelConfig, attach_keypoints

det = Detector(DetectorModelConfig())
pose = PoseEstimator(PoseModelConfig())
c = av.open("samples/vtest-h264.mp4")
frames = []
for i, f in enumerate(c.decode(video=0)):
    if i % 5 == 0:
        frames.append((i * 100, f.to_ndarray(format="rgb24")))
tracker = TimeAwareTracker()
last = {}
speeds = []
angles = []
recorded = []
for start in range(0, len(frames), 8):
    chunk = frames[start : start + 8]
    results = det.detect([im for _, im in chunk])
    poses = pose.estimate([im for _, im in chunk])
    for (t, im), objs, ps in zip(chunk, results, poses, strict=False):
        objs = attach_keypoints(objs, ps, 0.3)
        h, w = im.shape[:2]
        aspect = w / h
        dets = [Det.of(o) for o in objs if o.class_name == "person"]
        recorded.append({"t_ms": t, "dets": [[d.score, d.x1, d.y1, d.x2, d.y2, d.keypoints] for d in dets]})
        for tr in tracker.update(FrameDetections("v", t, 1_767_614_400_000 + t, FrameRef("f", 0, t), w, h, dets)):
            a = torso_angle_deg(tr.keypoints, aspect, 0.3)
            if a is not None:
                angles.append(a)
            off = limb_offsets(tr, aspect, 0.3)
            if off is None:
                last.pop(tr.track_id, None)
                continue
            b = last.get(tr.track_id)
            if b is not None and t - b["t"] <= 2000:
                s = limb_speed({"limbs": b["limbs"]}, off, (t - b["t"]) / 1000)
                if s is not None:
                    speeds.append(s)
            last[tr.track_id] = {"t": t, "limbs": off}


def q(v):
    return [round(float(np.percentile(v, p)), 2) for p in (50, 90, 95, 99, 100)]


print("limb speed samples", len(speeds), "pct 50/90/95/99/100", q(speeds))
print("torso angle samples", len(angles), "pct 50/90/95/99/100", q(angles))


def r(v):
    return round(v, 4)


with (Path(__file__).resolve().parent / "vtest_pose.jsonl").open("w") as out:
    out.write(
        json.dumps(
            {
                "source": "samples/vtest-h264.mp4",
                "source_sha256": "443d07a0240b9d522f6dd0e823c442ffa85cb6d1d3f2acce055ae8d91521f436",
                "detector": "centernet-mobilenetv3-coco.onnx (sha256 512c2dc7...)",
                "pose": "movenet-multipose-lightning.onnx (sha256 8ab8085a...), input 512",
                "every_s": 0.5,
                "width": 768,
                "height": 576,
                "classes": "person only",
                "row": "t_ms, dets: [score, x1, y1, x2, y2, keypoints (17 x [x, y, score]) or null]",
            }
        )
        + "\n"
    )
    for row in recorded:
        dets = [
            [r(s), r(a), r(b), r(c), r(d), None if k is None else [[r(x), r(y), r(sc)] for x, y, sc in k]]
            for s, a, b, c, d, k in row["dets"]
        ]
        out.write(json.dumps({"t_ms": row["t_ms"], "dets": dets}, separators=(",", ":")) + "\n")
