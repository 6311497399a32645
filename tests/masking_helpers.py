"""Comparing images region by region: did masking remove a face's detail, and leave the rest alone?"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def fine_detail(rgb: np.ndarray, box: list[int]) -> np.ndarray:
    """The region's high-pass component (grey minus a 2 px Gaussian blur): features, edges, texture."""
    patch = Image.fromarray(rgb).crop(tuple(box)).convert("L")
    return (np.asarray(patch, float) - np.asarray(patch.filter(ImageFilter.GaussianBlur(2)), float)).ravel()


def shared_detail(a: np.ndarray, b: np.ndarray, box: list[int]) -> float:
    """Correlation of the two images' fine detail in `box`: ~1 for the same picture, ~0 once it is gone."""
    return float(np.corrcoef(fine_detail(a, box), fine_detail(b, box))[0, 1])


def detail_left(original: np.ndarray, masked: np.ndarray, box: list[int]) -> float:
    """How much of the region's pixel-to-pixel variation survives masking (mean absolute neighbour
    difference, masked / original): ~1 untouched, ~0 flat. For faces of a few pixels, where the edges of
    the cells of a pixelation can still correlate with the original's outline (shared_detail ~0.4)."""
    x1, y1, x2, y2 = box

    def variation(rgb: np.ndarray) -> float:
        grey = rgb[y1:y2, x1:x2].astype(float).mean(axis=2)
        return float(np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=0)).mean())

    return variation(masked) / variation(original)


def face_hidden(original: np.ndarray, masked: np.ndarray, box: list[int]) -> bool:
    """A face counts as hidden when under a third of its variation is left and what is left shares
    little of its fine detail (NaN correlation: one flat cell, nothing left at all)."""
    with np.errstate(invalid="ignore"):
        shared = shared_detail(original, masked, box)
    return detail_left(original, masked, box) < 1 / 3 and (bool(np.isnan(shared)) or shared < 0.5)
