"""Output decoders: model-family specifics behind one `OutputDecoder` interface.

- "centernet": the default model (models/centernet-mobilenetv3-coco.onnx): NHWC RGB 0..255 input,
  output [B, 100, 6] = x1, y1, x2, y2 (input pixels), score, class id.
- "yolo": Ultralytics YOLOv8/YOLO11 ONNX exports: NCHW RGB 0..1 input, output [B, 4+nc, N] with
  cx, cy, w, h in input pixels followed by per-class scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from services.detector.config import ModelLoadError


@dataclass(frozen=True)
class Candidates:
    boxes: np.ndarray  # [K, 4] float32 x1, y1, x2, y2 in model-input pixels
    scores: np.ndarray  # [K] float32
    class_ids: np.ndarray  # [K] int64


class OutputDecoder(Protocol):
    """Model-family specifics: input tensor layout and how raw outputs become candidate boxes."""

    layout: Literal["NHWC", "NCHW"]
    pixel_scale: float  # multiplies 0..255 pixel values

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float) -> list[Candidates]:
        """Per image: candidate boxes (input pixels) with score >= score_threshold, before NMS."""
        ...


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
            decoded.append(
                Candidates(
                    boxes=kept[:, :4].astype(np.float32),
                    scores=kept[:, 4].astype(np.float32),
                    class_ids=kept[:, 5].astype(np.int64),
                )
            )
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
            decoded.append(
                Candidates(
                    boxes=boxes, scores=scores[keep].astype(np.float32), class_ids=class_ids[keep].astype(np.int64)
                )
            )
        return decoded


DECODERS: dict[str, type[CenterNetDecoder | YoloDecoder]] = {
    "centernet": CenterNetDecoder,
    "yolo": YoloDecoder,
}
