"""Detector configuration (which model, how to read its output) and the errors the detector raises."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_PATH = REPO_ROOT / "models" / "centernet-mobilenetv3-coco.onnx"
# The same detector quantised to INT8, any input size a multiple of 32 (models/quantize_centernet.py).
INT8_MODEL_PATH = REPO_ROOT / "models" / "centernet-mobilenetv3-coco-int8.onnx"
SHIPPED_MODELS: dict[str, Path] = {"fp32": DEFAULT_MODEL_PATH, "int8": INT8_MODEL_PATH}
DEFAULT_TENSORRT_CACHE_DIR = REPO_ROOT / ".cache" / "tensorrt"

# COCO-80 in the order both the default CenterNet model and Ultralytics COCO models use.
COCO_CLASS_NAMES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

PROVIDER_PREFERENCE: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)

ModelFormat = Literal["centernet", "yolo", "nanodet"]
ResizeMode = Literal["letterbox", "stretch"]
Precision = Literal["fp32", "int8"]


class BadImageError(ValueError):
    """An input frame cannot be used (corrupt JPEG, wrong array shape or dtype)."""


class ModelLoadError(RuntimeError):
    """The model file cannot be loaded or does not have the expected input/output shape."""


class DetectorModelConfig(BaseModel):
    """Which model to run and how to turn its raw output into detections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Precision = Field(
        default="fp32", description="which shipped CenterNet file to run when path is not set: fp32 or int8"
    )
    path: Path = Field(default=DEFAULT_MODEL_PATH, description="ONNX model file; default: the shipped one of precision")
    format: ModelFormat = Field(default="centernet", description="output layout: centernet, yolo or nanodet")
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
    intra_op_threads: int | None = Field(default=None, ge=1, le=256, description="default: the container's CPU quota")
    preprocess_threads: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="threads decoding and resizing a batch's frames in parallel; default: the CPU quota, at most 8",
    )
    device_id: int = Field(default=0, ge=0, description="GPU index for the CUDA and TensorRT providers")
    tensorrt_fp16: bool = Field(default=True, description="let TensorRT run layers in half precision")
    tensorrt_cache_dir: Path = Field(
        default=DEFAULT_TENSORRT_CACHE_DIR,
        description="where TensorRT keeps built engines and timing caches (minutes to build, so keep it on a volume)",
    )

    @model_validator(mode="before")
    @classmethod
    def _path_from_precision(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("path") is None and data.get("precision") in SHIPPED_MODELS:
            return {**data, "path": SHIPPED_MODELS[data["precision"]]}
        return data

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
    def _input_is_stride_aligned(self) -> DetectorModelConfig:
        # Both families downsample by 32 and upsample back; other sides break the feature-map adds.
        if self.input_size % 32:
            raise ValueError(
                f"{self.format} input_size must be a multiple of 32 (e.g. 512, 384, 320), got {self.input_size}"
            )
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
