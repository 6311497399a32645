"""Evidence image: the triggering frame with the alert's boxes drawn, as a size-capped JPEG."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from .model import TrackedBox

_QUALITIES = (85, 75, 65, 55, 45, 35, 25)
_MIN_DIM = 64


class SnapshotError(ValueError):
    """The frame could not be decoded, or no JPEG fits the byte cap."""


def _fit(image: Image.Image, max_dim: int) -> Image.Image:
    longest = max(image.size)
    if longest <= max_dim:
        return image
    scale = max_dim / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _draw(image: Image.Image, boxes: Sequence[TrackedBox], label: str) -> None:
    draw = ImageDraw.Draw(image)
    width, height = image.size
    line = max(2, round(max(width, height) / 300))
    font_size = max(12, round(height / 40))
    font = ImageFont.load_default(size=font_size)
    for box in boxes:
        corners = (box.x1 * width, box.y1 * height, box.x2 * width, box.y2 * height)
        draw.rectangle(corners, outline=(255, 40, 40), width=line)
        tag = f"{box.class_name} #{box.track_id}"
        draw.text((corners[0] + line, max(0, corners[1] - font_size - line)), tag, fill=(255, 40, 40), font=font)
    if label:
        banner = font_size + 2 * line
        draw.rectangle((0, 0, width, banner), fill=(0, 0, 0))
        draw.text((line, line), label, fill=(255, 255, 255), font=font)


def render_snapshot(
    jpeg_bytes: bytes,
    boxes: Sequence[TrackedBox],
    label: str,
    max_bytes: int = 200_000,
    max_dim: int = 1280,
) -> bytes:
    """Draw `boxes` (normalised coordinates) and `label` on the frame; return a JPEG of at most `max_bytes`.

    The image is first scaled so its longer side is at most `max_dim`; then quality is lowered and, if
    still too big, the image shrinks by a quarter per step down to 64 px. Raises SnapshotError otherwise.
    """
    if max_bytes <= 0 or max_dim < _MIN_DIM:
        raise SnapshotError(f"max_bytes must be positive and max_dim at least {_MIN_DIM}, got {max_bytes}, {max_dim}")
    try:
        with Image.open(io.BytesIO(jpeg_bytes)) as source:
            source.load()
            image = source.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise SnapshotError(f"frame bytes are not a decodable image ({len(jpeg_bytes)} bytes): {error}") from error
    # Draw at the output size so line widths and text stay legible after scaling.
    image = _fit(image, max_dim)
    _draw(image, boxes, label)
    while True:
        for quality in _QUALITIES:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=quality, optimize=True)
            if buffer.tell() <= max_bytes:
                return buffer.getvalue()
        if max(image.size) * 3 // 4 < _MIN_DIM:
            raise SnapshotError(
                f"cannot fit the snapshot under {max_bytes} bytes even at {image.size[0]}x{image.size[1]} "
                f"and quality {_QUALITIES[-1]}; raise max_bytes"
            )
        image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)), Image.Resampling.LANCZOS)
