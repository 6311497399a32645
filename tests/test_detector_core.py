"""Detector core on the real converted CenterNet model and real stills, plus YOLO decoding and NMS."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from libs.records import DetectedObject as Detection
from services.detector.config import (
    COCO_CLASS_NAMES,
    DEFAULT_MODEL_PATH,
    BadImageError,
    DetectorModelConfig,
    ModelLoadError,
)
from services.detector.detector import Detector
from services.detector.model import choose_providers, container_cpu_limit, file_sha256, provider_options
from services.detector.nms import box_iou_matrix, class_aware_nms
from services.detector.preprocess import decode_jpeg
from tests.assets_fetch import DEFAULT_CACHE_DIR, fetch_stills


@pytest.fixture(scope="module")
def stills() -> dict[str, Path]:
    return fetch_stills(DEFAULT_CACHE_DIR)


@pytest.fixture(scope="module")
def detector() -> Detector:
    centernet = Detector(DetectorModelConfig())
    centernet.warmup(runs=1)
    return centernet


def persons(detections: list[Detection]) -> list[Detection]:
    return [detection for detection in detections if detection.class_name == "person"]


def assert_box_is_sane(detection: Detection) -> None:
    assert 0.0 <= detection.x1 < detection.x2 <= 1.0, detection
    assert 0.0 <= detection.y1 < detection.y2 <= 1.0, detection


# ---------------------------------------------------------------- real model, real stills
def test_default_model_identity_and_classes(detector: Detector) -> None:
    # The identity carried on every Detections record is the hash pinned in the model card, i.e. of the
    # model file's bytes (not of its path, nor of a re-serialised graph).
    pinned = re.search(
        r"^\| sha256 \| `([0-9a-f]{64})` \|$", (DEFAULT_MODEL_PATH.parent / "MODEL_CARD.md").read_text(), re.MULTILINE
    )
    assert pinned is not None, "models/MODEL_CARD.md lists the model's sha256"
    assert detector.identity.sha256 == pinned.group(1) == file_sha256(DEFAULT_MODEL_PATH)
    assert detector.identity.name == "centernet-mobilenetv3-coco"
    assert detector.model.class_names == COCO_CLASS_NAMES  # read from the model's own metadata
    assert detector.model.fixed_batch is None  # the conversion made the batch axis dynamic


def test_bus_still_finds_the_bus_and_the_people(detector: Detector, stills: dict[str, Path]) -> None:
    run = detector.detect_jpegs([stills["bus.jpg"].read_bytes()])
    detections = run.results[0]
    buses = [detection for detection in detections if detection.class_name == "bus"]
    assert len(buses) == 1, detections
    bus = buses[0]
    assert bus.score >= 0.4
    assert bus.x2 - bus.x1 > 0.8, "the bus spans nearly the whole width of bus.jpg"
    assert bus.y1 < 0.35 and bus.y2 > 0.6

    people = persons(detections)
    assert 3 <= len(people) <= 7, people
    confident_people = [person for person in people if person.score >= 0.4]
    assert len(confident_people) >= 3, people
    for person in people:
        assert_box_is_sane(person)
    for person in confident_people:
        assert person.y2 - person.y1 > 0.3, "standing people in bus.jpg are tall boxes"
        assert person.y2 > 0.7, "their feet are in the lower part of the photo"
    assert run.timings.images == 1 and run.timings.inference_ms > 0 and run.timings.decode_ms > 0


def test_zidane_still_finds_two_people(detector: Detector, stills: dict[str, Path]) -> None:
    detections = detector.detect([decode_jpeg(stills["zidane.jpg"].read_bytes())])[0]
    people = persons(detections)
    assert len(people) == 2, detections
    for person in people:
        assert_box_is_sane(person)
        assert person.y2 - person.y1 > 0.6, "both men fill the frame's height"
    right_person = max(people, key=lambda person: person.x1)
    assert (right_person.x1 + right_person.x2) / 2 > 0.6, "Zidane stands on the right"


def box_array(detections: list[Detection]) -> np.ndarray:
    return np.array([[d.x1, d.y1, d.x2, d.y2] for d in detections], dtype=np.float32)


def test_scaled_jpeg_decode_covers_the_model_input_and_finds_the_same_objects(
    detector: Detector, stills: dict[str, Path]
) -> None:
    for name in ("bus.jpg", "zidane.jpg"):
        payload = stills[name].read_bytes()
        full = decode_jpeg(payload)
        scaled = decode_jpeg(payload, fit_within=512)
        height, width = full.shape[:2]
        fitted = min(512 / width, 512 / height)
        # Smaller than the original, yet never smaller than the letterboxed size the model sees.
        assert scaled.shape[0] < height and scaled.shape[1] < width, (name, scaled.shape)
        assert scaled.shape[1] >= round(width * fitted) and scaled.shape[0] >= round(height * fitted)
        assert abs(scaled.shape[1] / scaled.shape[0] - width / height) < 0.01  # aspect kept
        from_full = detector.detect([full])[0]
        from_scaled = detector.detect_jpegs([payload]).results[0]  # the service's path: scaled decode
        confident = [d for d in from_full if d.score >= 0.4]
        assert confident, name
        for expected in confident:
            same_class = [d for d in from_scaled if d.class_id == expected.class_id]
            overlaps = box_iou_matrix(box_array([expected]), box_array(same_class))[0] if same_class else [0.0]
            assert max(overlaps) >= 0.5, (name, expected, same_class)
            if expected.score >= 0.5:  # clear objects: practically the same box
                match = same_class[int(np.argmax(overlaps))]
                assert np.allclose(box_array([match]), box_array([expected]), atol=0.01), (name, expected, match)
    # A frame already smaller than the model input is decoded as it is.
    assert (
        decode_jpeg(stills["zidane.jpg"].read_bytes(), fit_within=4096).shape
        == decode_jpeg(stills["zidane.jpg"].read_bytes()).shape
    )


def test_preprocessing_in_parallel_gives_the_same_tensor_and_detections(stills: dict[str, Path]) -> None:
    payloads = [stills["bus.jpg"].read_bytes(), stills["zidane.jpg"].read_bytes()] * 3
    serial = Detector(DetectorModelConfig(max_batch_size=6, preprocess_threads=1))
    parallel = Detector(DetectorModelConfig(max_batch_size=6, preprocess_threads=3), model=serial.model)
    try:
        assert serial.preprocess_threads == 1 and parallel.preprocess_threads == 3
        assert serial.detect_jpegs(payloads).results == parallel.detect_jpegs(payloads).results
    finally:
        parallel.close()


def test_batch_returns_each_images_own_results_in_order(stills: dict[str, Path]) -> None:
    bus = decode_jpeg(stills["bus.jpg"].read_bytes())
    zidane = decode_jpeg(stills["zidane.jpg"].read_bytes())
    images = [bus, zidane, np.ascontiguousarray(bus[:, ::-1]), zidane[:360], bus]
    # max_batch_size 3 splits the 5 images into a batch of 3 and a batch of 2.
    batched_detector = Detector(DetectorModelConfig(max_batch_size=3))
    batched = batched_detector.detect(images)
    assert batched_detector.last_timings is not None and batched_detector.last_timings.batches == 2
    one_by_one = [batched_detector.detect([image])[0] for image in images]
    assert len(batched) == len(images)
    for together, alone in zip(batched, one_by_one, strict=False):
        assert [d.class_id for d in together] == [d.class_id for d in alone]
        for a, b in zip(together, alone, strict=False):
            assert np.allclose([a.score, a.x1, a.y1, a.x2, a.y2], [b.score, b.x1, b.y1, b.x2, b.y2], atol=1e-4)
    assert batched[0] != batched[1], "bus and zidane must not get the same detections"
    # The mirrored bus: the same bus, mirrored horizontally.
    bus_box = next(d for d in batched[0] if d.class_name == "bus")
    mirrored_bus_box = next(d for d in batched[2] if d.class_name == "bus")
    assert abs((1 - mirrored_bus_box.x2) - bus_box.x1) < 0.05


# ---------------------------------------------------------------- bad input
def test_corrupt_jpeg_raises_bad_image_error(stills: dict[str, Path]) -> None:
    good = stills["bus.jpg"].read_bytes()
    with pytest.raises(BadImageError, match="corrupt JPEG"):
        decode_jpeg(good[: len(good) // 2])
    with pytest.raises(BadImageError, match="not a JPEG"):
        decode_jpeg(b"GIF89a not a jpeg")
    with pytest.raises(BadImageError, match="empty"):
        decode_jpeg(b"")


def test_corrupt_frame_in_a_batch_does_not_spoil_the_others(detector: Detector, stills: dict[str, Path]) -> None:
    good = stills["zidane.jpg"].read_bytes()
    run = detector.detect_jpegs([good, good[:1000], good])
    assert set(run.errors) == {1}
    assert run.results[1] == []
    assert len(persons(run.results[0])) == 2 and run.results[0] == run.results[2]


def test_wrong_array_is_rejected_with_a_clear_message(detector: Detector) -> None:
    with pytest.raises(BadImageError, match=r"RGB uint8 array \[H, W, 3\]"):
        detector.detect([np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(BadImageError, match="RGB uint8"):
        detector.detect([np.zeros((10, 10, 3), dtype=np.float32)])


def test_config_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        DetectorModelConfig(path=tmp_path / "missing.onnx")
    with pytest.raises(ValidationError, match="blank entries"):
        DetectorModelConfig(class_names=["person", " "])
    with pytest.raises(ValidationError, match="multiple of 32"):
        DetectorModelConfig(format="yolo", input_size=100)
    with pytest.raises(ModelLoadError, match="input_size"):
        Detector(DetectorModelConfig(input_size=640))  # the CenterNet model is 512x512


# ---------------------------------------------------------------- YOLO format
YOLO_SIZE = 64
YOLO_CLASSES = ["car", "truck", "person"]


def build_tiny_yolo_model(path: Path, batch: int) -> None:
    """A YOLOv8-shaped ONNX: input [batch,3,64,64] 0..1, output [batch, 4+3, 5].

    Anchors (cx, cy, w, h in input pixels; class scores):
      0: (32, 32, 32, 16) car 0.9        1: (33, 32, 32, 16) car 0.8  (same object, lower score)
      2: (32, 32, 32, 16) truck 0.7      3: (50, 40, 4, 4) person 0.3 (under the threshold)
      4: (48, 48, 8, 8) person with score = the image's mean brightness (ties output to input)
    """
    anchors = np.zeros((4 + len(YOLO_CLASSES), 5), dtype=np.float32)
    anchors[:4, 0], anchors[4, 0] = (32, 32, 32, 16), 0.9
    anchors[:4, 1], anchors[4, 1] = (33, 32, 32, 16), 0.8
    anchors[:4, 2], anchors[5, 2] = (32, 32, 32, 16), 0.7
    anchors[:4, 3], anchors[6, 3] = (50, 40, 4, 4), 0.3
    anchors[:4, 4] = (48, 48, 8, 8)
    brightness_mask = np.zeros_like(anchors)
    brightness_mask[6, 4] = 1.0
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean", "mean_shape"], ["mean_b11"]),
        helper.make_node("Mul", ["mean_b11", "brightness_mask"], ["brightness"]),
        helper.make_node("Add", ["brightness", "anchors"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, YOLO_SIZE, YOLO_SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 4 + len(YOLO_CLASSES), 5])],
        initializer=[
            numpy_helper.from_array(anchors[None], "anchors"),
            numpy_helper.from_array(brightness_mask[None], "brightness_mask"),
            numpy_helper.from_array(np.array([batch, 1, 1], dtype=np.int64), "mean_shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": str(dict(enumerate(YOLO_CLASSES)))})  # as Ultralytics writes it
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture()
def tiny_yolo(tmp_path: Path) -> Detector:
    path = tmp_path / "tiny-yolo.onnx"
    build_tiny_yolo_model(path, batch=2)
    return Detector(DetectorModelConfig(path=path, format="yolo", input_size=YOLO_SIZE, score_threshold=0.5))


def test_yolo_decoder_unmaps_letterbox_and_keeps_other_classes(tiny_yolo: Detector) -> None:
    assert tiny_yolo.model.class_names == tuple(YOLO_CLASSES)  # from the Ultralytics-style metadata
    wide_black = np.zeros((100, 200, 3), dtype=np.uint8)  # letterboxed to 64x32, 16 px bars above/below
    detections = tiny_yolo.detect([wide_black])[0]
    by_class = {detection.class_name: detection for detection in detections}
    assert sorted(by_class) == ["car", "truck"], detections  # car 0.8 suppressed, person under threshold
    car = by_class["car"]
    assert car.score == pytest.approx(0.9)
    # input box (16, 24)-(48, 40); scale 0.32, pad_y 16 -> original (50, 25)-(150, 75) of 200x100
    assert (car.x1, car.y1, car.x2, car.y2) == pytest.approx((0.25, 0.25, 0.75, 0.75), abs=1e-5)
    truck = by_class["truck"]
    assert (truck.x1, truck.y1, truck.x2, truck.y2) == pytest.approx((0.25, 0.25, 0.75, 0.75), abs=1e-5)
    assert truck.score == pytest.approx(0.7)


def test_yolo_fixed_batch_pads_and_keeps_order(tiny_yolo: Detector) -> None:
    assert tiny_yolo.model.fixed_batch == 2
    wide_black = np.zeros((100, 200, 3), dtype=np.uint8)
    white = np.full((YOLO_SIZE, YOLO_SIZE, 3), 255, dtype=np.uint8)
    results = tiny_yolo.detect([wide_black, white, wide_black])  # batches [black, white], [black + padding]
    assert tiny_yolo.last_timings is not None and tiny_yolo.last_timings.batches == 2
    assert len(results) == 3
    bright = [d for d in results[1] if d.class_name == "person"]
    assert len(bright) == 1 and bright[0].score == pytest.approx(1.0)
    # no letterbox for a 64x64 image: (44, 44)-(52, 52) of 64
    assert (bright[0].x1, bright[0].y1, bright[0].x2, bright[0].y2) == pytest.approx(
        (44 / 64, 44 / 64, 52 / 64, 52 / 64), abs=1e-5
    )
    assert all(d.class_name != "person" for d in results[0] + results[2])
    assert results[0] == results[2]


# ---------------------------------------------------------------- NMS and helpers
def test_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], dtype=np.float32)
    kept = class_aware_nms(boxes, np.array([0.9, 0.8]), np.array([0, 1]), iou_threshold=0.5)
    assert kept.tolist() == [0, 1]


def test_nms_suppresses_overlapping_box_of_the_same_class() -> None:
    boxes = np.array([[1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=np.float32)
    kept = class_aware_nms(boxes, np.array([0.8, 0.9, 0.7]), np.array([3, 3, 3]), iou_threshold=0.5)
    assert kept.tolist() == [1, 2]  # highest first; the far box survives


def test_nms_is_greedy_a_suppressed_box_does_not_suppress() -> None:
    # A overlaps B (IoU 0.6), B overlaps C (IoU 0.6), A and C barely touch: greedy keeps A and C.
    boxes = np.array([[0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10]], dtype=np.float32)
    kept = class_aware_nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0]), iou_threshold=0.5)
    assert kept.tolist() == [0, 2]


def test_nms_limits_and_handles_empty_input() -> None:
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(5)], dtype=np.float32)
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.2])
    assert class_aware_nms(boxes, scores, np.zeros(5, dtype=np.int64), 0.5, max_detections=2).tolist() == [3, 1]
    empty = class_aware_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64), 0.5)
    assert empty.shape == (0,)


def test_cpu_limit_follows_the_cgroup_quota(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    assert container_cpu_limit(cpu_max) == 1
    cpu_max.write_text("250000 100000\n")  # 2.5 CPUs of quota: three threads may run at once
    assert container_cpu_limit(cpu_max) == min(3, len(os.sched_getaffinity(0)))
    visible = len(os.sched_getaffinity(0))
    cpu_max.write_text("max 100000\n")
    assert container_cpu_limit(cpu_max) == visible
    cpu_max.write_text("1000000000 100000\n")  # quota far above the machine: capped at visible cores
    assert container_cpu_limit(cpu_max) == visible
    assert container_cpu_limit(tmp_path / "absent") == visible


def test_cpu_limit_counts_the_cores_this_process_may_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pinned process (taskset, a Kubernetes static CPU policy) sees fewer cores than the machine has.
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3, 4, 5, 6, 7})
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("250000 100000\n")
    assert container_cpu_limit(cpu_max) == 3
    cpu_max.write_text("max 100000\n")
    assert container_cpu_limit(cpu_max) == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {5})
    assert container_cpu_limit(cpu_max) == 1
    cpu_max.write_text("250000 100000\n")
    assert container_cpu_limit(cpu_max) == 1


def test_provider_choice_prefers_tensorrt_then_cuda_then_cpu() -> None:
    preferred = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(preferred, ["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers(["TensorrtExecutionProvider"], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ModelLoadError, match="none of the providers"):
        choose_providers(["CUDAExecutionProvider"], ["AzureExecutionProvider"])


def test_tensorrt_gets_a_batch_profile_an_engine_cache_and_fp16(tmp_path: Path) -> None:
    cfg = DetectorModelConfig(max_batch_size=16, device_id=1, tensorrt_cache_dir=tmp_path / "trt")
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt, cuda, cpu = provider_options(providers, cfg, "input", ["batch", 512, 512, 3])
    assert trt == (
        "TensorrtExecutionProvider",
        {
            "device_id": "1",
            "trt_fp16_enable": "True",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(tmp_path / "trt"),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(tmp_path / "trt"),
            "trt_profile_min_shapes": "input:1x512x512x3",
            "trt_profile_opt_shapes": "input:16x512x512x3",
            "trt_profile_max_shapes": "input:16x512x512x3",
        },
    )
    assert cuda == ("CUDAExecutionProvider", {"device_id": "1"})
    assert cpu == ("CPUExecutionProvider", {})
    # A fixed-batch model keeps its batch; free spatial axes take the configured input size.
    (fixed,) = provider_options(
        ["TensorrtExecutionProvider"],
        cfg.model_copy(update={"tensorrt_fp16": False}),
        "images",
        [2, 3, "height", "width"],
    )
    assert fixed[1]["trt_fp16_enable"] == "False"
    assert {fixed[1][f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")} == {"images:2x3x512x512"}


# The pretence below makes onnxruntime warn that the provider is absent: expected here.
@pytest.mark.filterwarnings("ignore:Specified provider 'TensorrtExecutionProvider':UserWarning")
def test_unwritable_tensorrt_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Holds with and without a real TensorRT: where onnxruntime has none, pretend it has so the option
    # checks run (onnxruntime then warns that the provider is absent and runs on the CPU).
    available = onnxruntime.get_available_providers()
    really_has_tensorrt = "TensorrtExecutionProvider" in available
    if not really_has_tensorrt:
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["TensorrtExecutionProvider", *available])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ModelLoadError, match="tensorrt_cache_dir to a writable directory"):
        Detector(DetectorModelConfig(tensorrt_cache_dir=blocker / "trt"))
    cfg = DetectorModelConfig(
        tensorrt_cache_dir=tmp_path / "engines", providers=["TensorrtExecutionProvider", "CPUExecutionProvider"]
    )
    detector = Detector(cfg)
    assert (tmp_path / "engines").is_dir()
    providers = detector.model.providers
    assert providers[-1] == "CPUExecutionProvider" and set(providers) <= set(cfg.providers), providers
    if not really_has_tensorrt:
        assert providers == ("CPUExecutionProvider",)
