"""Output decoders: model-family specifics behind one `OutputDecoder` interface.

- "centernet": the default model (models/centernet-mobilenetv3-coco.onnx): NHWC RGB 0..255 input,
  output [B, 100, 6] = x1, y1, x2, y2 (input pixels), score, class id.
- "yolo": Ultralytics YOLOv8/YOLO11 ONNX exports: NCHW RGB 0..1 input, output [B, 4+nc, N] with
  cx, cy, w, h in input pixels followed by per-class scores.
- "nanodet": NanoDet-g (models/nanodet-g-416-coco.onnx, models/convert_nanodet.py): NCHW BGR input
  normalised with NanoDet's mean/std, per stride a score map [B, cells, nc] and a box map [B, cells, 44].
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


class NanoDetDecoder:
    """NanoDet (GFL head): for each stride s (8, 16, 32) a score map [B, cells, nc] (sigmoid) and a box
    map [B, cells, 4 * 11]: per side (left, top, right, bottom) 11 logits of the distance from the cell
    centre ((column + 0.5) * s, (row + 0.5) * s) in units of s; the distance is the softmax expectation.
    Every (cell, class) at or above the threshold is a candidate; NMS follows in the detector."""

    layout: Literal["NHWC", "NCHW"] = "NCHW"
    pixel_scale = 1.0
    BINS = 11
    STRIDES = (8, 16, 32)
    # NanoDet's training-time normalisation, BGR order (the converted graph does not normalise).
    MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32).reshape(3, 1, 1)
    STD_BGR = np.array([57.375, 57.12, 58.395], np.float32).reshape(3, 1, 1)

    def normalise(self, row: np.ndarray) -> None:
        """One NCHW RGB 0..255 input row, in place, to BGR (x - mean) / std."""
        row[:] = (row[::-1].copy() - self.MEAN_BGR) / self.STD_BGR

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float) -> list[Candidates]:
        if len(outputs) != 2 * len(self.STRIDES) or any(o.ndim != 3 for o in outputs):
            raise ModelLoadError(
                f"nanodet outputs must be {len(self.STRIDES)} pairs of [B, cells, classes] and [B, cells, 44], "
                f"got {[o.shape for o in outputs]}"
            )
        box_maps = sorted((o for o in outputs if o.shape[2] == 4 * self.BINS), key=lambda o: -o.shape[1])
        score_maps = sorted((o for o in outputs if o.shape[2] != 4 * self.BINS), key=lambda o: -o.shape[1])
        if len(box_maps) != len(self.STRIDES) or [b.shape[1] for b in box_maps] != [s.shape[1] for s in score_maps]:
            raise ModelLoadError(f"nanodet outputs do not pair up by cell count: {[o.shape for o in outputs]}")
        decoded = []
        for image in range(box_maps[0].shape[0]):
            boxes, scores, class_ids = [], [], []
            for stride, box_map, score_map in zip(self.STRIDES, box_maps, score_maps, strict=True):
                cells, class_ids_here = np.nonzero(score_map[image] >= score_threshold)
                if cells.size == 0:
                    continue
                width = round(float(np.sqrt(box_map.shape[1])))
                logits = box_map[image][cells].reshape(-1, 4, self.BINS)
                logits = np.exp(logits - logits.max(axis=2, keepdims=True))
                distances = (logits / logits.sum(axis=2, keepdims=True)) @ np.arange(self.BINS, dtype=np.float32)
                distances *= stride
                cx = (cells % width + 0.5) * stride
                cy = (cells // width + 0.5) * stride
                boxes.append(
                    np.stack(
                        [cx - distances[:, 0], cy - distances[:, 1], cx + distances[:, 2], cy + distances[:, 3]],
                        axis=1,
                    )
                )
                scores.append(score_map[image][cells, class_ids_here])
                class_ids.append(class_ids_here)
            if boxes:
                decoded.append(
                    Candidates(
                        boxes=np.concatenate(boxes).astype(np.float32),
                        scores=np.concatenate(scores).astype(np.float32),
                        class_ids=np.concatenate(class_ids).astype(np.int64),
                    )
                )
            else:
                decoded.append(Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
        return decoded


DECODERS: dict[str, type[CenterNetDecoder | YoloDecoder | NanoDetDecoder]] = {
    "centernet": CenterNetDecoder,
    "yolo": YoloDecoder,
    "nanodet": NanoDetDecoder,
}
