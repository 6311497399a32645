"""Class-aware non-maximum suppression on corner boxes."""

from __future__ import annotations

import numpy as np


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
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
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
            keep[index + 1 :] &= ~suppressors[index, index + 1 :]
    kept = order[keep]
    return kept[:max_detections] if max_detections is not None else kept
