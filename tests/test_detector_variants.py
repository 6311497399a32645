"""The INT8 CenterNet and the smaller input sizes: real model files, real stills, real sample frames."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime  # type: ignore[import-untyped]
import pytest
from pydantic import ValidationError

from libs.records import DetectedObject
from services.detector.config import (
    COCO_CLASS_NAMES,
    DEFAULT_MODEL_PATH,
    INT8_MODEL_PATH,
    DetectorModelConfig,
    ModelLoadError,
)
from services.detector.detector import Detector
from tests.assets_fetch import DEFAULT_CACHE_DIR, fetch_stills

REPO = Path(__file__).resolve().parents[1]


def load_quantize_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quantize_centernet", REPO / "models" / "quantize_centernet.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stills() -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in fetch_stills(DEFAULT_CACHE_DIR).items()}


@pytest.fixture(scope="module")
def fp32() -> Detector:
    return Detector(DetectorModelConfig(precision="fp32"))


@pytest.fixture(scope="module")
def int8() -> Detector:
    return Detector(DetectorModelConfig(precision="int8"))


def iou(a: DetectedObject, b: DetectedObject) -> float:
    inter = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1)) * max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter)


def unmatched(reference: list[DetectedObject], candidate: list[DetectedObject]) -> list[DetectedObject]:
    """Reference objects that no candidate of the same class covers at IoU >= 0.5."""
    return [
        ref for ref in reference if not any(c.class_name == ref.class_name and iou(ref, c) >= 0.5 for c in candidate)
    ]


def confident(detections: list[DetectedObject], classes: tuple[str, ...] = ("person", "bus")) -> list[DetectedObject]:
    return [d for d in detections if d.class_name in classes and d.score >= 0.4]


def test_precision_selects_the_shipped_file_and_the_int8_model_keeps_names_and_dynamic_shape(int8: Detector) -> None:
    assert DetectorModelConfig().path == DEFAULT_MODEL_PATH
    assert DetectorModelConfig(precision="int8").path == INT8_MODEL_PATH
    assert int8.identity.name == "centernet-mobilenetv3-coco-int8"
    assert int8.model.class_names == COCO_CLASS_NAMES  # metadata carried over by the quantisation script
    shape = int8.model.session.get_inputs()[0].shape
    assert shape[0] == "batch" and not isinstance(shape[1], int) and not isinstance(shape[2], int), shape
    quantised_ops = {node.op_type for node in onnx.load(str(INT8_MODEL_PATH)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= quantised_ops, "the file must really be quantised"


@pytest.mark.parametrize("still", ["bus.jpg", "zidane.jpg"])
def test_int8_finds_the_people_and_the_bus_fp32_finds_on_the_stills(
    fp32: Detector, int8: Detector, stills: dict[str, bytes], still: str
) -> None:
    reference = confident(fp32.detect_jpegs([stills[still]]).results[0])
    found = int8.detect_jpegs([stills[still]]).results[0]
    assert len(reference) >= 2, reference  # the stills have 2..4 confident people (and a bus)
    assert unmatched(reference, found) == [], found


def test_smaller_input_still_finds_the_bus_and_the_people(fp32: Detector, stills: dict[str, bytes]) -> None:
    small = Detector(DetectorModelConfig(precision="int8", input_size=384))
    run = small.detect_jpegs([stills["bus.jpg"]])
    assert small.model.session.get_inputs()[0].shape[1] != 512
    reference = confident(fp32.detect_jpegs([stills["bus.jpg"]]).results[0])
    assert unmatched(reference, run.results[0]) == [], run.results[0]
    small.close()


def test_any_size_graph_is_identical_to_the_converted_model_at_512() -> None:
    script = load_quantize_script()
    original = onnx.load(str(DEFAULT_MODEL_PATH))
    any_size = script.make_input_size_dynamic(original)
    frames = script.model_inputs(script.sample_frames(0.5, 1.0, 2), 512)
    outputs = [
        onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"images": frames}
        )[0]
        for model in (original, any_size)
    ]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    session = onnxruntime.InferenceSession(any_size.SerializeToString(), providers=["CPUExecutionProvider"])
    small = session.run(None, {"images": script.model_inputs(script.sample_frames(0.5, 1.0, 2), 320)})[0]
    assert small.shape == (2, 100, 6)
    assert small[:, :, :4].max() <= 330, "boxes are in the 320-pixel input's coordinates"


def test_service_settings_select_int8_and_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.detector.main import DetectorSettings

    monkeypatch.setenv("CCTV_MODEL__PRECISION", "int8")
    monkeypatch.setenv("CCTV_MODEL__INPUT_SIZE", "384")
    settings = DetectorSettings()
    assert (settings.model.path, settings.model.input_size) == (INT8_MODEL_PATH, 384)
    monkeypatch.setenv("CCTV_MODEL__INPUT_SIZE", "400")
    with pytest.raises(ValidationError, match="multiple of 32"):
        DetectorSettings()


def test_bad_precision_size_or_path_is_a_clear_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="'fp32' or 'int8'"):
        DetectorModelConfig(precision="int4")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="multiple of 32"):
        DetectorModelConfig(precision="int8", input_size=300)
    with pytest.raises(ValidationError, match="does not exist"):
        DetectorModelConfig(path=tmp_path / "centernet-int8.onnx")
    with pytest.raises(ModelLoadError, match="input_size is 384.*precision int8"):
        Detector(DetectorModelConfig(precision="fp32", input_size=384))  # the converted FP32 file is 512 only
    not_onnx = tmp_path / "broken.onnx"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="cannot load"):
        Detector(DetectorModelConfig(path=not_onnx))
