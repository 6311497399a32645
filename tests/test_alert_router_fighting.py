"""Fighting rule through the real tracker, on people with keypoints (pose stage output), and on the real
walkers of the sample clip with real keypoints (recorded from the real detector and pose model)."""

from __future__ import annotations

from typing import Any

from services.alert_router.config import CameraConfig
from services.alert_router.model import AlertKind, Det, FrameDetections, FrameRef
from services.alert_router.pipeline import CameraPipeline

W, H = 1280, 720
ASPECT = W / H
T0 = 1_767_614_400_000
WHOLE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
BODY = 0.4  # person height, fraction of the frame height


def person(cx: float, arm_out: float, foot_y: float = 0.9) -> Det:
    """An upright person whose right wrist and elbow are `arm_out` body heights to the side of the torso."""
    width = BODY * 0.4 / ASPECT
    top = foot_y - BODY
    torso_x = cx
    shoulder_y, hip_y = top + 0.2 * BODY, top + 0.5 * BODY
    points = [(cx, top + 0.08 * BODY, 0.9)] * 5  # nose, eyes, ears
    points += [(cx - width / 4, shoulder_y, 0.9), (cx + width / 4, shoulder_y, 0.9)]  # shoulders
    elbow_x = torso_x + arm_out * 0.5 * BODY / ASPECT
    wrist_x = torso_x + arm_out * BODY / ASPECT
    points += [(cx - width / 4, shoulder_y + 0.15 * BODY, 0.9), (elbow_x, shoulder_y + 0.05 * BODY, 0.9)]  # elbows
    points += [(cx - width / 4, hip_y, 0.9), (wrist_x, shoulder_y, 0.9)]  # wrists
    points += [(cx - width / 4, hip_y, 0.9), (cx + width / 4, hip_y, 0.9)]  # hips
    points += [(cx - width / 4, top + 0.75 * BODY, 0.9), (cx + width / 4, top + 0.75 * BODY, 0.9)]  # knees
    points += [(cx - width / 4, foot_y, 0.9), (cx + width / 4, foot_y, 0.9)]  # ankles
    return Det(cx - width / 2, top, cx + width / 2, foot_y, 0, "person", 0.9, tuple(points))


def alerts(per_frame: list[list[Det]], fps: float, **rule: Any) -> list[int]:
    camera = CameraConfig.model_validate(
        {"camera_id": "c", "zones": [{"name": "all", "polygon": WHOLE, "rules": [{"type": "fighting", **rule}]}]}
    )
    pipeline = CameraPipeline(camera)
    events = []
    for i, dets in enumerate(per_frame):
        frame = FrameDetections("c", i, T0 + round(i * 1000 / fps), FrameRef("f", 0, i), W, H, dets)
        events += [e.started_at - T0 for e in pipeline.process(frame) if e.kind is AlertKind.NEW]
    return events


def punches(seconds: float, fps: float, gap: float, swing: float) -> list[list[Det]]:
    """Two people `gap` body heights apart; the left one's arm goes out and back by `swing` every frame."""
    step = gap * BODY / ASPECT
    return [
        [person(0.45, 0.1 + (swing if i % 2 else 0.0)), person(0.45 + step, 0.1)] for i in range(int(seconds * fps))
    ]


def test_fast_repeated_punches_between_two_close_people_raise_one_alert() -> None:
    # 0.7 body heights of arm travel per 0.2 s frame: 3.5 body heights/s at 5 fps.
    (started,) = alerts(punches(6, 5.0, gap=0.6, swing=0.7), 5.0)
    # Tracks confirmed at 0.2 s; first speed at 0.4 s; held min_duration_s = 3 s.
    assert 3_000 <= started <= 4_000


def test_no_alert_when_apart_when_arms_move_slowly_or_too_briefly() -> None:
    assert alerts(punches(6, 5.0, gap=3.0, swing=0.7), 5.0) == []  # far apart: a lone shadow-boxer
    assert alerts(punches(6, 5.0, gap=0.6, swing=0.2), 5.0) == []  # arm swing of walking/talking: 1 h/s
    assert alerts(punches(2, 5.0, gap=0.6, swing=0.7), 5.0) == []  # shorter than min_duration_s
    standing = [[person(0.45, 0.1), person(0.6, 0.1)] for _ in range(30)]
    assert alerts(standing, 5.0) == []


def test_the_real_walkers_of_the_sample_clip_neither_fight_nor_fall() -> None:
    # Real detections with real keypoints (tests/data/detections/vtest_pose.jsonl, record_pose.py), 2 fps.
    import json
    from pathlib import Path

    lines = (Path(__file__).parent / "data" / "detections" / "vtest_pose.jsonl").read_text().splitlines()
    header, rows = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    frames = [
        FrameDetections(
            "vtest",
            i,
            T0 + row["t_ms"],
            FrameRef("f", 0, i),
            header["width"],
            header["height"],
            [
                Det(x1, y1, x2, y2, 0, "person", s, None if k is None else tuple(map(tuple, k)))
                for s, x1, y1, x2, y2, k in row["dets"]
            ],
        )
        for i, row in enumerate(rows)
    ]
    assert sum(1 for f in frames for d in f.detections if d.keypoints is not None) > 500
    camera = CameraConfig.model_validate(
        {
            "camera_id": "vtest",
            "zones": [{"name": "all", "polygon": WHOLE, "rules": [{"type": "fighting"}, {"type": "fall"}]}],
        }
    )
    pipeline = CameraPipeline(camera)
    assert [e for frame in frames for e in pipeline.process(frame)] == []
    # The same walkers would count as fighting with a threshold under their own arm swing (≤ 0.82 body
    # heights/s measured): the replay does exercise the limb-speed path.
    touchy = CameraConfig.model_validate(
        {
            "camera_id": "vtest",
            "zones": [
                {
                    "name": "all",
                    "polygon": WHOLE,
                    "rules": [
                        {"type": "fighting", "min_limb_speed": 0.3, "proximity_heights": 2.0, "min_duration_s": 1}
                    ],
                }
            ],
        }
    )
    pipeline = CameraPipeline(touchy)
    assert [e for frame in frames for e in pipeline.process(frame)]
