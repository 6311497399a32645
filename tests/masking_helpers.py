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
