"""Pure detector core: JPEG decode, preprocessing, ONNX Runtime inference, decoding, NMS.

Knows nothing of Kafka. The service loop (main.py) and the benchmark call `Detector.detect` /
`Detector.detect_jpegs` and read the per-stage timings that come back.

Two output formats sit behind one `OutputDecoder` interface:
- "centernet": the default model (models/centernet-mobilenetv3-coco.onnx): NHWC RGB 0..255 input,
  output [B, 100, 6] = x1, y1, x2, y2 (input pixels), score, class id.
- "yolo": Ultralytics YOLOv8/YOLO11 ONNX exports: NCHW RGB 0..1 input, output [B, 4+nc, N] with
  cx, cy, w, h in input pixels followed by per-class scores.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, Sequence, TypeVar

import numpy as np
import onnxruntime
import simplejpeg
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_PATH = REPO_ROOT / "models" / "centernet-mobilenetv3-coco.onnx"
DEFAULT_TENSORRT_CACHE_DIR = REPO_ROOT / ".cache" / "tensorrt"

# COCO-80 in the order both the default CenterNet model and Ultralytics COCO models use.
COCO_CLASS_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

PROVIDER_PREFERENCE: tuple[str, ...] = (
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider",
)

ModelFormat = Literal["centernet", "yolo"]
ResizeMode = Literal["letterbox", "stretch"]


class BadImageError(ValueError):
    """An input frame cannot be used (corrupt JPEG, wrong array shape or dtype)."""


class ModelLoadError(RuntimeError):
    """The model file cannot be loaded or does not have the expected input/output shape."""


# --------------------------------------------------------------------------------------------
# Configuration and identity
# --------------------------------------------------------------------------------------------
class DetectorModelConfig(BaseModel):
    """Which model to run and how to turn its raw output into detections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(default=DEFAULT_MODEL_PATH, description="ONNX model file")
    format: ModelFormat = Field(default="centernet", description="output layout: centernet or yolo")
    name: str | None = Field(default=None, description="model name reported with results; default: file stem")
    version: str = Field(default="1", min_length=1, description="model version reported with results")
    input_size: int = Field(default=512, ge=32, le=4096, description="square model input side, pixels")
    resize_mode: ResizeMode = Field(
        default="letterbox", description="letterbox keeps aspect ratio (padding); stretch resizes plainly"
    )
    pad_value: int | None = Field(
        default=None, ge=0, le=255, description="letterbox padding grey level; default 0 centernet, 114 yolo"
    )
    score_threshold: float = Field(default=0.2, gt=0.0, le=1.0)
    nms_iou: float = Field(default=0.45, gt=0.0, le=1.0, description="IoU above which a same-class box is dropped")
    max_detections: int = Field(default=100, ge=1, le=10_000, description="per image, after NMS")
    max_batch_size: int = Field(default=8, ge=1, le=256, description="largest batch sent to a dynamic-batch model")
    class_names: list[str] | None = Field(
        default=None, description="override; default: names stored in the model, else COCO-80"
    )
    providers: list[str] = Field(
        default_factory=lambda: list(PROVIDER_PREFERENCE),
        description="ONNX Runtime execution providers in order of preference",
    )
    intra_op_threads: int | None = Field(
        default=None, ge=1, le=256, description="default: the container's CPU quota"
    )
    preprocess_threads: int | None = Field(
        default=None, ge=1, le=64,
        description="threads decoding and resizing a batch's frames in parallel; default: the CPU quota, at most 8",
    )
    device_id: int = Field(default=0, ge=0, description="GPU index for the CUDA and TensorRT providers")
    tensorrt_fp16: bool = Field(default=True, description="let TensorRT run layers in half precision")
    tensorrt_cache_dir: Path = Field(
        default=DEFAULT_TENSORRT_CACHE_DIR,
        description="where TensorRT keeps built engines and timing caches (minutes to build, so keep it on a volume)",
    )

    @field_validator("path")
    @classmethod
    def _model_file_exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(
                f"model file {path} does not exist; set the detector model path to an ONNX file "
                f"(the default model is built by `make -C models convert`)"
            )
        return path

    @field_validator("class_names")
    @classmethod
    def _class_names_are_names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None:
            if not names:
                raise ValueError("class_names must not be empty; leave it unset to use the model's own names")
            blank = [index for index, name in enumerate(names) if not name.strip()]
            if blank:
                raise ValueError(f"class_names has blank entries at positions {blank}")
        return names

    @field_validator("providers")
    @classmethod
    def _providers_not_empty(cls, providers: list[str]) -> list[str]:
        if not providers:
            raise ValueError(f"providers must list at least one of {list(PROVIDER_PREFERENCE)}")
        return providers

    @model_validator(mode="after")
    def _yolo_input_is_stride_aligned(self) -> DetectorModelConfig:
        if self.format == "yolo" and self.input_size % 32:
            raise ValueError(f"yolo input_size must be a multiple of 32, got {self.input_size}")
        return self

    @property
    def effective_pad_value(self) -> int:
        if self.pad_value is not None:
            return self.pad_value
        return 114 if self.format == "yolo" else 0  # each family's own training-time padding


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    name: str
    version: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Detection:
    """One object; box corners normalised to 0..1 of the ORIGINAL image width/height."""

    class_id: int
    class_name: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class StageTimings:
    """Milliseconds spent per stage for one call (all chunks of the call together)."""

    images: int
    batches: int
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.preprocess_ms + self.inference_ms + self.postprocess_ms


@dataclass(frozen=True, slots=True)
class DetectionRun:
    """Per-image results in input order. For images that failed to decode, results[i] == [] and errors[i] says why."""

    results: list[list[Detection]]
    timings: StageTimings
    errors: dict[int, BadImageError] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Model loading
# --------------------------------------------------------------------------------------------
def container_cpu_limit(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may really use: the cgroup v2 quota if set, else the visible cores."""
    try:
        visible = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        visible = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return max(1, visible)
    if quota == "max":
        return max(1, visible)
    try:
        quota_cpus = math.ceil(int(quota) / int(period))
    except (ValueError, ZeroDivisionError):
        return max(1, visible)
    return max(1, min(visible, quota_cpus))


def choose_providers(preferred: Sequence[str], available: Sequence[str]) -> list[str]:
    """Preferred providers that this onnxruntime build has, in preference order; CPU is always last resort."""
    chosen = [provider for provider in preferred if provider in available]
    if "CPUExecutionProvider" in available and "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    if not chosen:
        raise ModelLoadError(f"none of the providers {list(preferred)} is available; this build has {list(available)}")
    return chosen


ProviderSpec = tuple[str, dict[str, str]]


def provider_options(
    providers: Sequence[str], cfg: DetectorModelConfig, input_name: str, input_shape: Sequence[int | str | None]
) -> list[ProviderSpec]:
    """ONNX Runtime provider list with each provider's options.

    TensorRT gets one optimisation profile covering batch 1..max_batch_size (without it the provider
    rebuilds its engine, for minutes, whenever a larger batch arrives), an engine and timing cache on
    disk (so a restart loads the engine instead of building it) and FP16 if enabled.
    """
    specs: list[ProviderSpec] = []
    for provider in providers:
        if provider == "TensorrtExecutionProvider":
            model_batch = input_shape[0] if isinstance(input_shape[0], int) and input_shape[0] > 0 else None

            def shape(batch: int) -> str:
                sides = [model_batch or batch] + [
                    side if isinstance(side, int) and side > 0 else cfg.input_size for side in input_shape[1:]
                ]
                return f"{input_name}:{'x'.join(str(side) for side in sides)}"

            cache = str(cfg.tensorrt_cache_dir)
            specs.append((provider, {
                "device_id": str(cfg.device_id),
                "trt_fp16_enable": str(cfg.tensorrt_fp16),
                "trt_engine_cache_enable": "True", "trt_engine_cache_path": cache,
                "trt_timing_cache_enable": "True", "trt_timing_cache_path": cache,
                "trt_profile_min_shapes": shape(1),
                "trt_profile_opt_shapes": shape(cfg.max_batch_size),
                "trt_profile_max_shapes": shape(cfg.max_batch_size),
            }))
        elif provider == "CUDAExecutionProvider":
            specs.append((provider, {"device_id": str(cfg.device_id)}))
        else:
            specs.append((provider, {}))
    return specs


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class LoadedModel:
    session: onnxruntime.InferenceSession
    identity: ModelIdentity
    input_name: str
    fixed_batch: int | None  # None: the model takes any batch size
    class_names: tuple[str, ...]
    providers: tuple[str, ...]
    intra_op_threads: int


def _preload_gpu_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels that onnxruntime-gpu's [cuda,cudnn] extras install
    (the GPU image has no system CUDA); without this the CUDA provider cannot find them and the
    session quietly runs on the CPU."""
    preload = getattr(onnxruntime, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is None:
        return
    try:
        preload()
    except Exception as error:  # a missing wheel is reported; system-wide CUDA may still serve
        log.warning("could not preload CUDA/cuDNN from the nvidia wheels: %s", error)


def _open_session(
    path: Path, options: onnxruntime.SessionOptions, specs: list[ProviderSpec]
) -> onnxruntime.InferenceSession:
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=options,
            providers=[name for name, _ in specs], provider_options=[opts for _, opts in specs],
        )
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelLoadError(f"cannot load {path} as an ONNX model: {error}") from error


def _class_names_from_metadata(metadata: dict[str, str]) -> tuple[str, ...] | None:
    if "class_names" in metadata:  # written by models/convert_centernet.py
        names = json.loads(metadata["class_names"])
        return tuple(str(name) for name in names)
    if "names" in metadata:  # Ultralytics exports: "{0: 'person', 1: 'bicycle', ...}"
        names_by_id = ast.literal_eval(metadata["names"])
        return tuple(str(names_by_id[index]) for index in sorted(names_by_id))
    return None


def load_model(cfg: DetectorModelConfig) -> LoadedModel:
    """Open an ONNX Runtime session with the best available provider and CPU-quota-sized thread pools."""
    threads = cfg.intra_op_threads or container_cpu_limit()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one model graph, sequential: extra inter-op threads only contend
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = choose_providers(cfg.providers, onnxruntime.get_available_providers())
    if providers != ["CPUExecutionProvider"]:
        _preload_gpu_libraries()
    input_name, input_shape = "", []
    if "TensorrtExecutionProvider" in providers:
        # The optimisation profile names the graph input, known only once the graph is read: read it
        # first with a plain CPU session (a fraction of a second, only where TensorRT is present).
        probe = _open_session(cfg.path, onnxruntime.SessionOptions(), [("CPUExecutionProvider", {})])
        input_name, input_shape = probe.get_inputs()[0].name, probe.get_inputs()[0].shape
        try:
            cfg.tensorrt_cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ModelLoadError(
                f"cannot create the TensorRT engine cache {cfg.tensorrt_cache_dir}: {error}; "
                f"set the detector model tensorrt_cache_dir to a writable directory"
            ) from error
    specs = provider_options(providers, cfg, input_name, input_shape)
    session = _open_session(cfg.path, options, specs)
    if providers[0] != "CPUExecutionProvider" and session.get_providers()[0] == "CPUExecutionProvider":
        # onnxruntime-gpu falls back to the CPU with only its own log lines; say it plainly once more.
        log.warning("GPU providers %s are in this onnxruntime build but the model runs on the CPU; "
                    "`python -m services.detector.gpu_check` says why", providers[:-1])

    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelLoadError(f"{cfg.path}: expected one 4-D image input, found {[(i.name, i.shape) for i in inputs]}")
    batch_dim = inputs[0].shape[0]
    fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
    spatial = inputs[0].shape[1:3] if cfg.format == "centernet" else inputs[0].shape[2:4]
    if any(isinstance(side, int) and side != cfg.input_size for side in spatial):
        raise ModelLoadError(
            f"{cfg.path} expects {spatial} input pixels but input_size is {cfg.input_size}; "
            f"set input_size to match the model (or check the format, currently {cfg.format!r})"
        )
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    class_names = tuple(cfg.class_names) if cfg.class_names else (
        _class_names_from_metadata(metadata) or COCO_CLASS_NAMES
    )
    identity = ModelIdentity(
        name=cfg.name or cfg.path.stem, version=cfg.version, sha256=file_sha256(cfg.path)
    )
    return LoadedModel(
        session=session, identity=identity, input_name=inputs[0].name, fixed_batch=fixed_batch,
        class_names=class_names, providers=tuple(session.get_providers()), intra_op_threads=threads,
    )


# --------------------------------------------------------------------------------------------
# Decode and preprocess
# --------------------------------------------------------------------------------------------
def decode_jpeg(data: bytes, fit_within: int | None = None, resize_mode: ResizeMode = "letterbox") -> np.ndarray:
    """JPEG bytes -> RGB uint8 array [H, W, 3]; BadImageError for anything that is not a readable JPEG.

    With `fit_within` (the model input side), libjpeg-turbo decodes straight at the smallest n/8 scale
    that still covers what the model will see: fewer pixels to decode and to resize (measured: a
    1080p frame 11.9 -> 5.2 ms decode + resize, a 768x576 one 3.7 -> 3.1 ms). Box coordinates are
    fractions of the image, so the smaller decode changes nothing downstream.
    """
    if not data:
        raise BadImageError("empty image payload: expected JPEG bytes")
    if bytes(data[:2]) != b"\xff\xd8":  # JPEG start-of-image marker
        raise BadImageError(f"payload is not a JPEG: starts with {bytes(data[:4])!r}, not the JPEG marker FF D8")
    try:
        min_width = min_height = 0
        if fit_within:
            height, width = simplejpeg.decode_jpeg_header(data)[:2]
            if resize_mode == "stretch":
                min_width, min_height = min(width, fit_within), min(height, fit_within)
            else:
                scale = min(1.0, fit_within / width, fit_within / height)
                min_width, min_height = math.ceil(width * scale), math.ceil(height * scale)
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=min_width, min_height=min_height)
    except (ValueError, RuntimeError) as error:
        raise BadImageError(f"corrupt JPEG ({len(data)} bytes): {error}") from error


@dataclass(frozen=True, slots=True)
class ImageTransform:
    """How one original image was placed in the model input (to map boxes back)."""

    original_width: int
    original_height: int
    scale_x: float  # input pixels per original pixel
    scale_y: float
    pad_x: float
    pad_y: float

    def boxes_to_normalised(self, boxes: np.ndarray) -> np.ndarray:
        """[K, 4] x1,y1,x2,y2 in model-input pixels -> fractions of the original image, clipped to 0..1."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, [0, 2]] = (boxes[:, [0, 2]] - self.pad_x) / self.scale_x / self.original_width
        out[:, [1, 3]] = (boxes[:, [1, 3]] - self.pad_y) / self.scale_y / self.original_height
        return np.clip(out, 0.0, 1.0)


def _validate_image(image: np.ndarray, index: int) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        described = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
        raise BadImageError(f"image {index} must be an RGB uint8 array [H, W, 3], got {described}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise BadImageError(f"image {index} is empty: shape {image.shape}")


def fit_image(image: np.ndarray, size: int, resize_mode: ResizeMode, pad_value: int) -> tuple[np.ndarray, ImageTransform]:
    """Resize (and for letterbox, centre-pad) one RGB image to size x size uint8."""
    height, width = image.shape[:2]
    if resize_mode == "stretch":
        new_width, new_height = size, size
    else:
        scale = min(size / width, size / height)
        new_width = max(1, min(size, round(width * scale)))
        new_height = max(1, min(size, round(height * scale)))
    resized = image
    if (new_width, new_height) != (width, height):
        resized = np.asarray(Image.fromarray(image).resize((new_width, new_height), Image.Resampling.BILINEAR))
    if resize_mode == "stretch":
        canvas, pad_x, pad_y = resized, 0, 0
    else:
        pad_x, pad_y = (size - new_width) // 2, (size - new_height) // 2
        canvas = np.full((size, size, 3), pad_value, dtype=np.uint8)
        canvas[pad_y:pad_y + new_height, pad_x:pad_x + new_width] = resized
    transform = ImageTransform(
        original_width=width, original_height=height,
        scale_x=new_width / width, scale_y=new_height / height, pad_x=pad_x, pad_y=pad_y,
    )
    return canvas, transform


@dataclass(frozen=True)
class PreprocessedBatch:
    tensor: np.ndarray  # float32, layout per model format
    transforms: list[ImageTransform]


@dataclass(frozen=True)
class PreparedFrames:
    """Frames decoded and preprocessed, waiting for the model."""

    count: int  # frames asked for, corrupt ones included
    batches: list[PreprocessedBatch]  # model-sized
    positions: list[int]  # input index of each preprocessed image, in batch order
    errors: dict[int, BadImageError]  # input index -> why that frame could not be used
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0


class OutputDecoder(Protocol):
    """Model-family specifics: input tensor layout and how raw outputs become candidate boxes."""

    layout: Literal["NHWC", "NCHW"]
    pixel_scale: float  # multiplies 0..255 pixel values

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float) -> list["Candidates"]:
        """Per image: candidate boxes (input pixels) with score >= score_threshold, before NMS."""
        ...


def preprocess_batch(
    images: Sequence[np.ndarray], cfg: DetectorModelConfig, decoder: OutputDecoder,
    rows: int | None = None,
    map_fn: Callable[[Callable[[int], ImageTransform], Iterable[int]], Iterable[ImageTransform]] = map,
) -> PreprocessedBatch:
    """Validate, resize/letterbox and write RGB uint8 images into the model's float32 input tensor.

    Each image is written straight into its row of one preallocated tensor, so `map_fn` (a thread
    pool's map) can prepare the rows in parallel: resizing and the float conversion release the GIL.
    `rows` > len(images) pads a fixed-batch model's input with blank rows.
    """
    if not images:
        raise BadImageError("no images to preprocess")
    count = max(rows or 0, len(images))
    side = cfg.input_size
    shape = (count, side, side, 3) if decoder.layout == "NHWC" else (count, 3, side, side)
    tensor = np.zeros(shape, dtype=np.float32) if count > len(images) else np.empty(shape, dtype=np.float32)

    def fill(index: int) -> ImageTransform:
        image = images[index]
        _validate_image(image, index)
        canvas, transform = fit_image(image, side, cfg.resize_mode, cfg.effective_pad_value)
        row = tensor[index]
        np.copyto(row, canvas.transpose(2, 0, 1) if decoder.layout == "NCHW" else canvas)
        if decoder.pixel_scale != 1.0:
            row *= decoder.pixel_scale
        return transform

    return PreprocessedBatch(tensor=tensor, transforms=list(map_fn(fill, range(len(images)))))


def run_batch(session: onnxruntime.InferenceSession, batch: np.ndarray) -> list[np.ndarray]:
    """One forward pass; returns all model outputs."""
    input_name = session.get_inputs()[0].name
    return session.run(None, {input_name: batch})


# --------------------------------------------------------------------------------------------
# Output decoders
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidates:
    boxes: np.ndarray  # [K, 4] float32 x1, y1, x2, y2 in model-input pixels
    scores: np.ndarray  # [K] float32
    class_ids: np.ndarray  # [K] int64


class CenterNetDecoder:
    """[B, K, 6] rows of x1, y1, x2, y2, score, class id (the converted default model)."""

    layout: Literal["NHWC", "NCHW"] = "NHWC"
    pixel_scale = 1.0  # the model was trained on raw 0..255 RGB

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float) -> list[Candidates]:
        rows = outputs[0]
        if rows.ndim != 3 or rows.shape[2] != 6:
            raise ModelLoadError(f"centernet output must be [B, K, 6], got {rows.shape}; is the format right?")
        decoded = []
        for image_rows in rows:
            keep = image_rows[:, 4] >= score_threshold
            kept = image_rows[keep]
            decoded.append(Candidates(
                boxes=kept[:, :4].astype(np.float32), scores=kept[:, 4].astype(np.float32),
                class_ids=kept[:, 5].astype(np.int64),
            ))
        return decoded


class YoloDecoder:
    """Ultralytics YOLOv8/YOLO11 export: [B, 4 + nc, N], rows cx, cy, w, h then class scores."""

    layout: Literal["NHWC", "NCHW"] = "NCHW"
    pixel_scale = 1.0 / 255.0

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float) -> list[Candidates]:
        raw = outputs[0]
        if raw.ndim != 3 or raw.shape[1] < 5:
            raise ModelLoadError(f"yolo output must be [B, 4 + classes, anchors], got {raw.shape}")
        decoded = []
        for prediction in raw:  # [4 + nc, N]
            class_scores = prediction[4:]
            class_ids = class_scores.argmax(axis=0)
            scores = class_scores[class_ids, np.arange(class_scores.shape[1])]
            keep = scores >= score_threshold
            cx, cy, w, h = prediction[:4, keep]
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
            decoded.append(Candidates(boxes=boxes, scores=scores[keep].astype(np.float32),
                                      class_ids=class_ids[keep].astype(np.int64)))
        return decoded


DECODERS: dict[str, type[CenterNetDecoder] | type[YoloDecoder]] = {
    "centernet": CenterNetDecoder,
    "yolo": YoloDecoder,
}


# --------------------------------------------------------------------------------------------
# NMS
# --------------------------------------------------------------------------------------------
def box_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """[A, 4] x [B, 4] corner boxes -> [A, B] intersection over union."""
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(boxes_a[:, 2:] - boxes_a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(boxes_b[:, 2:] - boxes_b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def class_aware_nms(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
    max_detections: int | None = None,
) -> np.ndarray:
    """Indices of kept boxes, highest score first; boxes only suppress boxes of their own class."""
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    sorted_boxes, sorted_classes = boxes[order], class_ids[order]
    overlaps = box_iou_matrix(sorted_boxes, sorted_boxes)
    # Only a higher-scored box of the same class may suppress (strict upper triangle).
    suppressors = (overlaps > iou_threshold) & (sorted_classes[:, None] == sorted_classes[None, :])
    suppressors = np.triu(suppressors, k=1)
    keep = np.ones(len(order), dtype=bool)
    for index in range(len(order)):  # greedy: a suppressed box no longer suppresses others
        if keep[index]:
            keep[index + 1:] &= ~suppressors[index, index + 1:]
    kept = order[keep]
    return kept[:max_detections] if max_detections is not None else kept


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------
def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")




class Detector:
    """Runs one model over any number of images, in model-sized batches, with per-stage timings."""

    def __init__(self, cfg: DetectorModelConfig, model: LoadedModel | None = None) -> None:
        self.cfg = cfg
        self.model = model or load_model(cfg)
        self.decoder: OutputDecoder = DECODERS[cfg.format]()
        self.last_timings: StageTimings | None = None
        # JPEG decoding and resizing run outside the GIL: a pool keeps them from starving the model,
        # above all on a GPU, where they would otherwise take longer than the forward pass.
        self.preprocess_threads = cfg.preprocess_threads or min(8, container_cpu_limit())
        self._pool = (ThreadPoolExecutor(self.preprocess_threads, thread_name_prefix="preprocess")
                      if self.preprocess_threads > 1 else None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _map(self, function: Callable[[ItemT], ResultT], items: Iterable[ItemT]) -> list[ResultT]:
        listed = list(items)
        if self._pool is None or len(listed) < 2:
            return [function(item) for item in listed]
        return list(self._pool.map(function, listed))

    @property
    def identity(self) -> ModelIdentity:
        return self.model.identity

    @property
    def batch_size(self) -> int:
        """Images per forward pass: the model's fixed batch, else the configured maximum."""
        return self.model.fixed_batch or self.cfg.max_batch_size

    def warmup(self, runs: int = 2) -> float:
        """Run blank frames through the model (first runs allocate memory / build kernels); returns ms of the last."""
        blank = np.zeros((self.cfg.input_size, self.cfg.input_size, 3), dtype=np.uint8)
        elapsed = 0.0
        for _ in range(max(1, runs)):
            start = time.perf_counter()
            self.detect([blank] * self.batch_size)
            elapsed = _elapsed_ms(start)
        return elapsed

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detections per image, in input order; timings of this call land in `last_timings`."""
        return self.infer(self.prepare_images(images)).results

    def detect_jpegs(self, payloads: Sequence[bytes]) -> DetectionRun:
        """Decode and detect; a corrupt frame gets [] and an entry in `errors`, the others still run."""
        return self.infer(self.prepare_jpegs(payloads))

    # The two halves of a detection, so a caller can prepare the next batch while the model runs this one.
    def prepare_jpegs(self, payloads: Sequence[bytes]) -> PreparedFrames:
        """JPEG decode + preprocessing (CPU work, parallel on the pool); corrupt frames land in `errors`."""
        started = time.perf_counter()

        def decode_or_error(payload: bytes) -> np.ndarray | BadImageError:
            try:
                return decode_jpeg(payload, self.cfg.input_size, self.cfg.resize_mode)
            except BadImageError as error:
                return error

        decoded: list[np.ndarray] = []
        positions: list[int] = []
        errors: dict[int, BadImageError] = {}
        for index, image in enumerate(self._map(decode_or_error, payloads)):
            if isinstance(image, BadImageError):
                errors[index] = image
            else:
                decoded.append(image)
                positions.append(index)
        decode_ms = _elapsed_ms(started)
        prepared = self.prepare_images(decoded)
        return dataclasses.replace(prepared, count=len(payloads), positions=positions, errors=errors,
                                   decode_ms=decode_ms)

    def prepare_images(self, images: Sequence[np.ndarray]) -> PreparedFrames:
        """Preprocess RGB arrays into model-sized input batches."""
        started = time.perf_counter()
        batches = [
            # A fixed-batch model needs full batches: blank rows pad it, their output is ignored.
            preprocess_batch(images[start:start + self.batch_size], self.cfg, self.decoder,
                             rows=self.model.fixed_batch, map_fn=self._map)
            for start in range(0, len(images), self.batch_size)
        ]
        return PreparedFrames(count=len(images), batches=batches, positions=list(range(len(images))),
                              errors={}, preprocess_ms=_elapsed_ms(started))

    def infer(self, prepared: PreparedFrames) -> DetectionRun:
        """Run the model over prepared batches, then decode and NMS; results in input order."""
        inference_ms = postprocess_ms = 0.0
        found: list[list[Detection]] = []
        for batch in prepared.batches:
            started = time.perf_counter()
            outputs = run_batch(self.model.session, batch.tensor)
            inference_ms += _elapsed_ms(started)
            started = time.perf_counter()
            candidates = self.decoder.decode(outputs, self.cfg.score_threshold)[: len(batch.transforms)]
            found.extend(self._finish(candidate, transform) for candidate, transform in zip(candidates, batch.transforms))
            postprocess_ms += _elapsed_ms(started)
        results: list[list[Detection]] = [[] for _ in range(prepared.count)]
        for position, detections in zip(prepared.positions, found):
            results[position] = detections
        timings = StageTimings(
            images=prepared.count, batches=len(prepared.batches), decode_ms=prepared.decode_ms,
            preprocess_ms=prepared.preprocess_ms, inference_ms=inference_ms, postprocess_ms=postprocess_ms,
        )
        self.last_timings = timings
        return DetectionRun(results=results, timings=timings, errors=prepared.errors)

    def _finish(self, candidates: Candidates, transform: ImageTransform) -> list[Detection]:
        kept = class_aware_nms(
            candidates.boxes, candidates.scores, candidates.class_ids, self.cfg.nms_iou, self.cfg.max_detections
        )
        normalised = transform.boxes_to_normalised(candidates.boxes[kept])
        names = self.model.class_names
        detections = []
        for (x1, y1, x2, y2), score, class_id in zip(normalised, candidates.scores[kept], candidates.class_ids[kept]):
            if x2 <= x1 or y2 <= y1:
                continue  # box lies wholly in the letterbox padding
            class_index = int(class_id)
            detections.append(Detection(
                class_id=class_index,
                class_name=names[class_index] if 0 <= class_index < len(names) else f"class_{class_index}",
                score=float(score), x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2),
            ))
        return detections
