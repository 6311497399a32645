"""JPEG encoding straight from the decoder's YUV 4:2:0 planes (libjpeg-turbo via simplejpeg), never via RGB."""

from __future__ import annotations

import av
import av.error
import numpy as np
import simplejpeg  # type: ignore[import-untyped]
from av.video.reformatter import ColorRange, VideoReformatter

from services.frame_sampler.config import JpegConfig

# AVCOL_RANGE_JPEG: the frame's levels span 0-255, as JPEG expects.
FULL_COLOR_RANGE = int(ColorRange.JPEG)


def _plane_array(plane: av.video.plane.VideoPlane) -> np.ndarray:
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _is_full_range_yuv420(frame: av.VideoFrame) -> bool:
    """Planes already in JPEG's form: 4:2:0 with full-range (0-255) levels, as MJPEG and some IP cameras send."""
    name = frame.format.name
    return name == "yuvj420p" or (name == "yuv420p" and frame.color_range == FULL_COLOR_RANGE)


def encode_jpeg(
    frame: av.VideoFrame, config: JpegConfig, reformatter: VideoReformatter | None = None
) -> tuple[bytes, int, int]:
    """JPEG of the frame, longest side at most config.max_dimension; returns (jpeg, width, height).

    Encodes straight from YUV 4:2:0 planes, never via RGB. A full-range 4:2:0 frame that needs no resizing
    is encoded from the decoder's own planes; anything else takes one swscale pass (size, full-range levels).
    Pass the same `reformatter` for a stream of equal-sized frames to reuse its swscale set-up.
    """
    scale = min(1.0, config.max_dimension / max(frame.width, frame.height))
    width = max(2, round(frame.width * scale / 2) * 2)
    height = max(2, round(frame.height * scale / 2) * 2)
    if (width, height) == (frame.width, frame.height) and _is_full_range_yuv420(frame):
        jpeg_ready = frame
    else:
        # JPEG's YCbCr is full range; video is usually limited (16-235) and must be stretched. Encoding the
        # limited levels as they are would cost ~7.5 grey levels of mean error (measured on samples/vtest).
        jpeg_ready = (reformatter or VideoReformatter()).reformat(
            frame,
            width=width,
            height=height,
            format="yuv420p",
            interpolation="AREA",
            dst_color_range="JPEG",
            threads=1,
        )
    luma, blue, red = (_plane_array(plane) for plane in jpeg_ready.planes)
    jpeg = simplejpeg.encode_jpeg_yuv_planes(luma, blue, red, quality=config.quality, fastdct=config.fast_dct)
    return jpeg, width, height
