"""The pure detector: JPEG decode → preprocessing → ONNX Runtime inference → output decoding → NMS,
over any number of images in model-sized batches, with per-stage timings. Knows nothing of Kafka: the
service loop and the benchmark call `Detector.prepare_jpegs` + `Detector.infer` (or `detect_jpegs`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from libs.records import DetectedObject
from services.detector.config import BadImageError, DetectorModelConfig, ModelIdentity
from services.detector.decoders import DECODERS, Candidates, OutputDecoder
from services.detector.model import (
    LoadedModel,
    container_cpu_limit,
    load_model,
    run_batch,
)
from services.detector.nms import class_aware_nms
from services.detector.preprocess import (
    ImageTransform,
    PreprocessedBatch,
    decode_jpeg,
    preprocess_batch,
)


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

    results: list[list[DetectedObject]]
    timings: StageTimings
    errors: dict[int, BadImageError] = field(default_factory=dict)
    # The decoded RGB images (None where decoding failed), for a later stage (pose) not to decode again.
    images: list[np.ndarray | None] = field(default_factory=list)


@dataclass(frozen=True)
class PreparedFrames:
    """Frames decoded and preprocessed, waiting for the model."""

    count: int  # frames asked for, corrupt ones included
    batches: list[PreprocessedBatch]  # model-sized
    positions: list[int]  # input index of each preprocessed image, in batch order
    errors: dict[int, BadImageError]  # input index -> why that frame could not be used
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    images: list[np.ndarray] = field(default_factory=list)  # decoded, in `positions` order


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
        self._pool = (
            ThreadPoolExecutor(self.preprocess_threads, thread_name_prefix="preprocess")
            if self.preprocess_threads > 1
            else None
        )

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

    def detect(self, images: Sequence[np.ndarray]) -> list[list[DetectedObject]]:
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
        return dataclasses.replace(
            prepared, count=len(payloads), positions=positions, errors=errors, decode_ms=decode_ms
        )

    def prepare_images(self, images: Sequence[np.ndarray]) -> PreparedFrames:
        """Preprocess RGB arrays into model-sized input batches."""
        started = time.perf_counter()
        batches = [
            # A fixed-batch model needs full batches: blank rows pad it, their output is ignored.
            preprocess_batch(
                images[start : start + self.batch_size],
                self.cfg,
                self.decoder,
                rows=self.model.fixed_batch,
                map_fn=self._map,
            )
            for start in range(0, len(images), self.batch_size)
        ]
        return PreparedFrames(
            count=len(images),
            batches=batches,
            positions=list(range(len(images))),
            errors={},
            preprocess_ms=_elapsed_ms(started),
            images=list(images),
        )

    def infer(self, prepared: PreparedFrames) -> DetectionRun:
        """Run the model over prepared batches, then decode and NMS; results in input order."""
        inference_ms = postprocess_ms = 0.0
        found: list[list[DetectedObject]] = []
        for batch in prepared.batches:
            started = time.perf_counter()
            outputs = run_batch(self.model.session, batch.tensor)
            inference_ms += _elapsed_ms(started)
            started = time.perf_counter()
            candidates = self.decoder.decode(outputs, self.cfg.score_threshold)[: len(batch.transforms)]
            found.extend(
                self._finish(candidate, transform)
                for candidate, transform in zip(candidates, batch.transforms, strict=False)
            )
            postprocess_ms += _elapsed_ms(started)
        results: list[list[DetectedObject]] = [[] for _ in range(prepared.count)]
        for position, detections in zip(prepared.positions, found, strict=False):
            results[position] = detections
        timings = StageTimings(
            images=prepared.count,
            batches=len(prepared.batches),
            decode_ms=prepared.decode_ms,
            preprocess_ms=prepared.preprocess_ms,
            inference_ms=inference_ms,
            postprocess_ms=postprocess_ms,
        )
        self.last_timings = timings
        images: list[np.ndarray | None] = [None] * prepared.count
        for position, image in zip(prepared.positions, prepared.images, strict=False):
            images[position] = image
        return DetectionRun(results=results, timings=timings, errors=prepared.errors, images=images)

    def _finish(self, candidates: Candidates, transform: ImageTransform) -> list[DetectedObject]:
        kept = class_aware_nms(
            candidates.boxes, candidates.scores, candidates.class_ids, self.cfg.nms_iou, self.cfg.max_detections
        )
        normalised = transform.boxes_to_normalised(candidates.boxes[kept])
        names = self.model.class_names
        detections = []
        for (x1, y1, x2, y2), score, class_id in zip(
            normalised, candidates.scores[kept], candidates.class_ids[kept], strict=False
        ):
            if x2 <= x1 or y2 <= y1:
                continue  # box lies wholly in the letterbox padding
            class_index = int(class_id)
            detections.append(
                DetectedObject(
                    class_id=class_index,
                    class_name=names[class_index] if 0 <= class_index < len(names) else f"class_{class_index}",
                    score=float(score),
                    x1=float(x1),
                    y1=float(y1),
                    x2=float(x2),
                    y2=float(y2),
                )
            )
        return detections
