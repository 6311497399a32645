"""Privacy masking of what leaves the centre: faces found by CenterFace (models/centerface.onnx, see
models/MODEL_CARD-centerface.md), heads of detected people and licence plates (PP-OCR text regions) are
pixelated beyond recognition. Pure: images in, images out.

Shared by the dispatcher (webhook snapshots) and, later, shared live video and exported evidence.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
from PIL import Image

CENTERFACE_PATH = Path(__file__).resolve().parents[1] / "models" / "centerface.onnx"
PPOCR_DET_PATH = Path(__file__).resolve().parents[1] / "models" / "ppocr-v4-det.onnx"
VEHICLE_CLASSES = frozenset({"car", "truck", "bus", "motorcycle"})
_STRIDE = 4  # heat-map cell size in input pixels
# CenterFace boxes are tight on the features: at 1.6x they cover whole faces, chin and forehead included
# (1.3x left 10-20 % of hand-boxed faces visible; docs/benchmarks/masking.md).
SNAPSHOT_FACE_GROW = 1.6


@dataclass(frozen=True, slots=True)
class Region:
    """A box in image pixels (x1, y1) inclusive to (x2, y2) exclusive, with the detector's score."""

    x1: int
    y1: int
    x2: int
    y2: int
    score: float = 1.0

    def grown(self, factor: float, width: int, height: int) -> Region:
        """The box scaled about its centre (hair, ears, a turned head), clipped to the image."""
        cx, cy = (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2
        half_w, half_h = (self.x2 - self.x1) * factor / 2, (self.y2 - self.y1) * factor / 2
        return Region(
            max(0, int(cx - half_w)),
            max(0, int(cy - half_h)),
            min(width, int(np.ceil(cx + half_w))),
            min(height, int(np.ceil(cy + half_h))),
            self.score,
        )


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order, keep = list(np.argsort(scores)[::-1]), []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        best, order = order[0], order[1:]
        keep.append(int(best))
        if not order:
            break
        rest = np.array(order)
        inter_w = np.clip(
            np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None
        )
        inter_h = np.clip(
            np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None
        )
        inter = inter_w * inter_h
        overlap = inter / (areas[best] + areas[rest] - inter)
        order = [o for o, ov in zip(order, overlap, strict=True) if ov < threshold]
    return keep


class FaceDetector:
    """CenterFace: RGB 0..255 NCHW in, stride-4 heat map + box size + offset out."""

    def __init__(
        self, path: Path = CENTERFACE_PATH, threads: int = 1, threshold: float = 0.4, upscale: int = 1
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.threshold = threshold
        # CCTV faces can be 6-8 px high: 2x upscaling finds them at about 4x the cost (docs/benchmarks/masking.md).
        self.upscale = upscale

    def detect(self, rgb: np.ndarray) -> list[Region]:
        if self.upscale > 1:
            height, width = rgb.shape[:2]
            big = np.asarray(
                Image.fromarray(rgb).resize((width * self.upscale, height * self.upscale), Image.Resampling.BICUBIC)
            )
            k = self.upscale
            return [
                Region(r.x1 // k, r.y1 // k, min(width, -(-r.x2 // k)), min(height, -(-r.y2 // k)), r.score)
                for r in self._detect(big)
            ]
        return self._detect(rgb)

    def _detect(self, rgb: np.ndarray) -> list[Region]:
        height, width = rgb.shape[:2]
        # The network needs sides that are multiples of 32: pad (never resize: small faces must stay).
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        blob[0, :, :height, :width] = rgb.transpose(2, 0, 1)
        heatmap, scale, offset, _landmarks = self.session.run(None, {"input.1": blob})
        ys, xs = np.where(heatmap[0, 0] > self.threshold)
        if len(ys) == 0:
            return []
        box_h, box_w = np.exp(scale[0, 0, ys, xs]) * _STRIDE, np.exp(scale[0, 1, ys, xs]) * _STRIDE
        centre_y = (ys + offset[0, 0, ys, xs] + 0.5) * _STRIDE
        centre_x = (xs + offset[0, 1, ys, xs] + 0.5) * _STRIDE
        boxes = np.stack(
            [centre_x - box_w / 2, centre_y - box_h / 2, centre_x + box_w / 2, centre_y + box_h / 2], axis=1
        )
        scores = heatmap[0, 0, ys, xs]
        return [
            Region(
                max(0, int(boxes[i, 0])),
                max(0, int(boxes[i, 1])),
                min(width, int(np.ceil(boxes[i, 2]))),
                min(height, int(np.ceil(boxes[i, 3]))),
                float(scores[i]),
            )
            for i in _nms(boxes, scores, 0.3)
        ]


class PlateDetector:
    """Licence plates as text regions (PP-OCRv4 DBNet): inside each vehicle box, enlarged, and on the whole
    frame as a fallback for vehicles the object detector missed or mislabelled (keeping plate-shaped
    regions only). The detector reads no characters, it only says where text is, which is what masking
    needs. Each text region is grown into the plate around it (frame, country strip): see
    docs/benchmarks/masking.md for the recall this buys on hand-annotated stills."""

    def __init__(
        self,
        path: Path = PPOCR_DET_PATH,
        threads: int = 1,
        threshold: float = 0.3,
        min_side: int = 320,
        margin_x: float = 0.6,
        margin_y: float = 0.25,
        whole_frame_side: int = 960,
        plate_aspect: tuple[float, float] = (1.5, 12.0),
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.threshold, self.min_side = threshold, min_side
        # A plate is wider than its characters by its frame and country strip (about a character height
        # on the left of an EU plate) and taller by its border: margins in units of the text's height.
        self.margin_x, self.margin_y = margin_x, margin_y
        self.whole_frame_side = whole_frame_side  # 0: no whole-frame pass
        self.plate_aspect = plate_aspect

    def detect(self, rgb: np.ndarray, vehicles: list[Region]) -> list[Region]:
        found = []
        for vehicle in vehicles:
            crop = rgb[vehicle.y1 : vehicle.y2, vehicle.x1 : vehicle.x2]
            if crop.shape[0] < 8 or crop.shape[1] < 8:
                continue
            # Small (distant) vehicles are enlarged so a plate spans enough of the 4x-reduced map.
            zoom = max(1.0, self.min_side / min(crop.shape[:2]))
            found += [
                Region(vehicle.x1 + r.x1, vehicle.y1 + r.y1, vehicle.x1 + r.x2, vehicle.y1 + r.y2)
                for r in self._text_regions(crop, zoom)
            ]
        if self.whole_frame_side > 0:
            zoom = min(1.0, self.whole_frame_side / max(rgb.shape[:2]))
            low, high = self.plate_aspect
            found += [r for r in self._text_regions(rgb, zoom) if low <= (r.x2 - r.x1) / max(1, r.y2 - r.y1) <= high]
        height, width = rgb.shape[:2]
        return [self._plate_around(r, width, height) for r in found]

    def _plate_around(self, text: Region, width: int, height: int) -> Region:
        pad_x, pad_y = (text.y2 - text.y1) * self.margin_x, (text.y2 - text.y1) * self.margin_y
        return Region(
            max(0, int(text.x1 - pad_x)),
            max(0, int(text.y1 - pad_y)),
            min(width, int(np.ceil(text.x2 + pad_x))),
            min(height, int(np.ceil(text.y2 + pad_y))),
        )

    def _text_regions(self, crop: np.ndarray, zoom: float) -> list[Region]:
        """Text boxes in `crop`'s pixels, the network run on the crop scaled by about `zoom`."""
        from scipy import ndimage  # type: ignore[import-untyped]

        h, w = (max(32, round(n * zoom / 32) * 32) for n in crop.shape[:2])
        resized = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
        blob = ((resized[:, :, ::-1] / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]  # BGR, [-1, 1]
        (probability,) = self.session.run(None, {"x": np.ascontiguousarray(blob)})
        labels, _count = ndimage.label(probability[0, 0] > self.threshold)
        scale_x, scale_y = crop.shape[1] / w, crop.shape[0] / h
        regions = []
        for rows, cols in ndimage.find_objects(labels):
            if (rows.stop - rows.start) * (cols.stop - cols.start) < 4:
                continue  # specks of one or two map cells: noise, not text
            # DBNet's map shrinks text boxes: grow them back by half their height on every side.
            pad = (rows.stop - rows.start) / 2
            regions.append(
                Region(
                    max(0, int((cols.start - pad) * scale_x)),
                    max(0, int((rows.start - pad) * scale_y)),
                    min(crop.shape[1], int(np.ceil((cols.stop + pad) * scale_x))),
                    min(crop.shape[0], int(np.ceil((rows.stop + pad) * scale_y))),
                )
            )
        return regions


def vehicle_regions(objects: list[dict], width: int, height: int) -> list[Region]:
    return [
        Region(
            max(0, int(o["x1"] * width)),
            max(0, int(o["y1"] * height)),
            min(width, int(np.ceil(o["x2"] * width))),
            min(height, int(np.ceil(o["y2"] * height))),
        )
        for o in objects
        if o.get("class_name") in VEHICLE_CLASSES
    ]


def pixelate(rgb: np.ndarray, regions: list[Region], blocks: int = 6) -> np.ndarray:
    """A copy with each region replaced by at most `blocks` x `blocks` flat cells (not reversible,
    unlike a light blur)."""
    out = rgb.copy()
    for region in regions:
        patch = out[region.y1 : region.y2, region.x1 : region.x2]
        if patch.size == 0:
            continue
        h, w = patch.shape[:2]
        rows, cols = np.array_split(np.arange(h), min(blocks, h)), np.array_split(np.arange(w), min(blocks, w))
        for r in rows:
            for c in cols:
                cell = patch[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
                cell[...] = cell.reshape(-1, cell.shape[-1]).mean(axis=0).astype(rgb.dtype)
    return out


def head_regions(objects: list[dict], width: int, height: int, head_share: float = 0.22) -> list[Region]:
    """The top of every person box (normalised x1..y2, as in an Alert's objects): the head of a person the
    detector saw, hidden even when the face is too small for CenterFace (CCTV faces are often 6-9 px)."""
    regions = []
    for obj in objects:
        if obj.get("class_name") != "person":
            continue
        x1, y1, x2, y2 = obj["x1"] * width, obj["y1"] * height, obj["x2"] * width, obj["y2"] * height
        regions.append(
            Region(
                max(0, int(x1)),
                max(0, int(y1)),
                min(width, int(np.ceil(x2))),
                min(height, int(np.ceil(y1 + (y2 - y1) * head_share))),
            )
        )
    return regions


@dataclass(frozen=True)
class MaskResult:
    jpeg: bytes
    faces: list[Region]
    seconds: float
    plates: list[Region] = field(default_factory=list)


def mask_jpeg(
    jpeg: bytes,
    detector: FaceDetector,
    people: list[dict] | None = None,
    grow: float = SNAPSHOT_FACE_GROW,
    quality: int = 85,
    plates: PlateDetector | None = None,
) -> MaskResult:
    """Decode, find faces, pixelate them (boxes grown by `grow`), the heads of the people among `people`
    (an Alert's objects) and, with `plates`, text regions inside its vehicles; re-encode. Raises
    ValueError on bytes that are not an image."""
    started = time.perf_counter()
    try:
        image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"snapshot is not a readable image: {error}") from error
    rgb = np.asarray(image)
    faces = detector.detect(rgb)
    height, width = rgb.shape[:2]
    regions = [f.grown(grow, width, height) for f in faces] + head_regions(people or [], width, height)
    plate_regions = plates.detect(rgb, vehicle_regions(people or [], width, height)) if plates is not None else []
    masked = pixelate(rgb, regions + plate_regions)
    buffer = io.BytesIO()
    Image.fromarray(masked).save(buffer, format="JPEG", quality=quality)
    return MaskResult(buffer.getvalue(), faces, time.perf_counter() - started, plate_regions)
