"""Privacy masking on real stills with the real CenterFace model: faces found against hand annotations,
face regions pixelated in the output while the rest of the picture stays as it was."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from libs.masking import FaceDetector, Region, head_regions, mask_jpeg, pixelate
from tests.assets_fetch import fetch_stills
from tests.masking_helpers import shared_detail

ANNOTATIONS = json.loads((Path(__file__).parent / "data" / "masking" / "faces.json").read_text())["images"]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def stills() -> dict[str, Path]:
    return fetch_stills()


def detail(rgb: np.ndarray, box: list[int]) -> float:
    """Mean absolute difference between neighbouring pixels: high on a face, ~0 on flat cells."""
    x1, y1, x2, y2 = box
    patch = rgb[y1:y2, x1:x2].astype(float)
    return float(np.abs(np.diff(patch, axis=1)).mean() + np.abs(np.diff(patch, axis=0)).mean())


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg"])
def test_every_hand_annotated_face_of_a_real_still_is_pixelated(
    name: str, detector: FaceDetector, stills: dict[str, Path]
) -> None:
    original_jpeg = stills[name].read_bytes()
    result = mask_jpeg(original_jpeg, detector)
    original = np.asarray(Image.open(io.BytesIO(original_jpeg)).convert("RGB"))
    masked = np.asarray(Image.open(io.BytesIO(result.jpeg)).convert("RGB"))
    assert masked.shape == original.shape and len(result.faces) >= len(ANNOTATIONS[name])
    for face in ANNOTATIONS[name]:
        x1, y1, x2, y2 = face
        inner = [
            x1 + (x2 - x1) // 4,
            y1 + (y2 - y1) // 4,
            x2 - (x2 - x1) // 4,
            y2 - (y2 - y1) // 4,
        ]  # eyes, nose, mouth
        assert shared_detail(original, masked, inner) < 0.3, (name, face)  # measured 0.12, 0.22 / -0.01, 0.17
    # Away from the faces the picture is what it was (only JPEG re-encoding noise).
    height, width = original.shape[:2]
    assert shared_detail(original, masked, [0, height - 150, width, height]) > 0.95  # measured 0.998 / 0.997


def test_heads_of_tracked_people_are_hidden_even_where_no_face_is_found(
    detector: FaceDetector, stills: dict[str, Path]
) -> None:
    rgb = np.asarray(Image.open(stills["bus.jpg"]).convert("RGB"))
    height, width = rgb.shape[:2]
    person = {"class_name": "person", "x1": 700 / width, "y1": 380 / height, "x2": 810 / width, "y2": 880 / height}
    van = {"class_name": "car", "x1": 0.1, "y1": 0.1, "x2": 0.9, "y2": 0.9}
    (head,) = head_regions([person, van], width, height)
    assert (head.x1, head.y1, head.x2) == (700, 380, 810) and 480 <= head.y2 <= 495
    out = pixelate(rgb, [head])
    assert detail(out, [head.x1, head.y1, head.x2, head.y2]) < detail(rgb, [head.x1, head.y1, head.x2, head.y2]) / 3


def test_pixelation_keeps_at_most_blocks_by_blocks_distinct_cells_and_clips_to_the_image() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    out = pixelate(rgb, [Region(10, 10, 40, 40)], blocks=3)
    assert len({tuple(p) for p in out[10:40, 10:40].reshape(-1, 3)}) <= 9
    assert np.array_equal(out[:10], rgb[:10]) and np.array_equal(out[:, 40:], rgb[:, 40:])
    assert Region(70, 50, 90, 70).grown(1.5, 80, 60) == Region(65, 45, 80, 60)


def test_bytes_that_are_not_an_image_are_refused_with_a_clear_error(detector: FaceDetector) -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        mask_jpeg(b"\xff\xd8 not really a jpeg", detector)


def test_text_inside_a_vehicle_box_is_pixelated_as_a_plate_would_be(
    detector: FaceDetector, stills: dict[str, Path]
) -> None:
    from libs.masking import PlateDetector

    jpeg = stills["bus.jpg"].read_bytes()
    original = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    height, width = original.shape[:2]
    bus = {"class_name": "bus", "x1": 10 / width, "y1": 225 / height, "x2": 805 / width, "y2": 730 / height}
    result = mask_jpeg(jpeg, detector, [bus], plates=PlateDetector(whole_frame_side=0))  # in-vehicle pass only
    masked = np.asarray(Image.open(io.BytesIO(result.jpeg)).convert("RGB"))
    route_sign = [45, 330, 145, 368]  # "M1 SOL SEVILLA" on the bus's front, boxed by hand
    assert shared_detail(original, masked, route_sign) < 0.3
    assert all(10 <= r.x1 and r.x2 <= 805 and 225 <= r.y1 and r.y2 <= 730 for r in result.plates)  # inside the bus only
    assert shared_detail(original, masked, [0, 0, width, 200]) > 0.95  # the building above is untouched
