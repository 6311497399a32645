"""NanoDet-g as an alternative detector: the GFL decode as a plain function, then the converted model
(models/convert_nanodet.py) through the production Detector on the real stills."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from services.detector.config import DetectorModelConfig, ModelLoadError
from services.detector.decoders import NanoDetDecoder
from services.detector.detector import Detector
from tests.assets_fetch import DEFAULT_CACHE_DIR, fetch_stills
from tests.test_detector_variants import confident, unmatched

REPO = Path(__file__).resolve().parents[1]
NANODET = REPO / "models" / "nanodet-g-416-coco.onnx"


def empty_outputs(classes: int = 80) -> list[np.ndarray]:
    """Zero score maps and flat box logits for a 416 px input: 52², 26², 13² cells."""
    outputs = []
    for cells in (52 * 52, 26 * 26, 13 * 13):
        outputs += [np.zeros((1, cells, classes), np.float32), np.zeros((1, cells, 44), np.float32)]
    return outputs


def test_a_cell_becomes_a_box_around_its_centre_at_the_expected_distances() -> None:
    outputs = empty_outputs()
    # Stride 16 (outputs 2 and 3), cell at column 5, row 3: centre (88, 56). Class 0 (person) at 0.9.
    cell = 3 * 26 + 5
    outputs[2][0, cell, 0] = 0.9
    # Distances (in strides) left 2, top 4, right 1, bottom 10: one dominant logit per side.
    logits = np.full((4, 11), -20.0, np.float32)
    for side, bin_index in enumerate((2, 4, 1, 10)):
        logits[side, bin_index] = 20.0
    outputs[3][0, cell] = logits.reshape(44)
    (found,) = NanoDetDecoder().decode(outputs, score_threshold=0.5)
    assert found.class_ids.tolist() == [0] and found.scores.tolist() == pytest.approx([0.9])
    assert found.boxes[0].tolist() == pytest.approx([88 - 32, 56 - 64, 88 + 16, 56 + 160], abs=1e-3)
    # Under the threshold nothing is a candidate; a two-bin split lands between the bins.
    assert NanoDetDecoder().decode(outputs, score_threshold=0.95)[0].boxes.shape == (0, 4)
    logits[0, 2] = logits[0, 3] = 20.0
    outputs[3][0, cell] = logits.reshape(44)
    (split,) = NanoDetDecoder().decode(outputs, score_threshold=0.5)
    assert split.boxes[0, 0] == pytest.approx(88 - 2.5 * 16, abs=1e-3)


def test_normalisation_is_bgr_with_nanodets_mean_and_std() -> None:
    row = np.empty((3, 2, 2), np.float32)
    row[0], row[1], row[2] = 255.0, 128.0, 0.0  # R, G, B
    NanoDetDecoder().normalise(row)
    assert row[0, 0, 0] == pytest.approx((0.0 - 103.53) / 57.375)  # B first
    assert row[2, 0, 0] == pytest.approx((255.0 - 123.675) / 58.395)  # R last


def test_outputs_that_are_not_nanodets_are_a_clear_error() -> None:
    with pytest.raises(ModelLoadError, match=re.escape("nanodet outputs must be 3 pairs")):
        NanoDetDecoder().decode([np.zeros((1, 100, 6), np.float32)], 0.3)


def test_the_committed_model_is_the_pinned_conversion() -> None:
    converter = (REPO / "models" / "convert_nanodet.py").read_text()
    pinned = re.search(r'PINNED_ONNX_SHA256 = "([0-9a-f]{64})"', converter)
    assert pinned is not None
    assert hashlib.sha256(NANODET.read_bytes()).hexdigest() == pinned.group(1)


@pytest.mark.parametrize("still", ["bus.jpg", "zidane.jpg"])
def test_nanodet_finds_every_confident_person_and_bus_centernet_finds_on_the_stills(still: str) -> None:
    stills = fetch_stills(DEFAULT_CACHE_DIR)
    image = stills[still].read_bytes()
    centernet = Detector(DetectorModelConfig())
    nanodet = Detector(DetectorModelConfig(path=NANODET, format="nanodet", input_size=416))
    try:
        assert nanodet.batch_size == 1  # the converted graph has a fixed batch of 1
        reference = confident(centernet.detect_jpegs([image]).results[0])
        found = nanodet.detect_jpegs([image]).results[0]
        assert len(reference) >= 2, reference
        assert unmatched(reference, found) == [], found
        assert {d.class_name for d in confident(found)} <= {"person", "bus"}
    finally:
        centernet.close()
        nanodet.close()
