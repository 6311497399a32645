"""Detector service loop: batched ONNX Runtime inference over frames of many cameras.

Consumes: cctv.frames.v1 (group cctv-detector). Produces: cctv.detections.v1, cctv.dlq.v1.

Batching: one consume call returns up to `max_batch` frames or whatever arrived within `max_wait_ms`,
from any cameras; they go through one `session.run`. Backpressure is structural: the next batch is
fetched only after this one is produced and committed, and librdkafka's prefetch queue is capped
(`queued.max.messages.kbytes`), so memory stays bounded however far behind the detector is.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram
from pydantic import Field

from libs.kafka import ConsumeProduceLoop, Incoming, Outgoing, Rejected, make_consumer, make_producer
from libs.service import ServiceRuntime, start_service
from libs.settings import CommonSettings
from libs.topics import DETECTIONS, FRAMES
from services.detector.core import Detector, DetectorModelConfig

log = logging.getLogger(__name__)
SERVICE = "detector"

FRAMES_DETECTED = Counter("cctv_detector_frames_total", "Frames run through the model")
OBJECTS = Counter("cctv_detector_objects_total", "Objects detected", ["class_name"])
STAGE_MS = Histogram("cctv_detector_stage_ms", "Milliseconds per frame by stage", ["stage"],
                     buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
BATCH_SIZE = Histogram("cctv_detector_batch_size", "Frames per session.run", buckets=(1, 2, 4, 8, 16, 32, 64))


class DetectorSettings(CommonSettings):
    group_id: str = "cctv-detector"
    model: DetectorModelConfig = Field(default_factory=DetectorModelConfig)
    max_batch: int = Field(default=8, ge=1, le=256)
    max_wait_ms: int = Field(default=50, ge=1, le=10_000)
    # Frames librdkafka may prefetch while the model runs (bounds memory; JPEGs are ~50-200 kB).
    prefetch_mb: int = Field(default=64, ge=1)


class DetectionStage:
    """Core call for one batch: JPEG decode → preprocess → one session.run per model batch → NMS."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        identity = detector.identity
        self.model_id = {"name": identity.name, "version": identity.version, "sha256": identity.sha256}

    def handle(self, batch: list[Incoming]) -> tuple[list[Outgoing], list[Rejected]]:
        run = self.detector.detect_jpegs([record.value["jpeg"] for record in batch])
        images = max(1, run.timings.images)
        per_frame_ms = run.timings.inference_ms / images
        for stage in ("decode", "preprocess", "inference", "postprocess"):
            STAGE_MS.labels(stage).observe(getattr(run.timings, f"{stage}_ms") / images)
        BATCH_SIZE.observe(len(batch))
        now_us = time.time_ns() // 1000
        outputs: list[Outgoing] = []
        rejected: list[Rejected] = []
        for index, (record, detections) in enumerate(zip(batch, run.results)):
            if index in run.errors:
                rejected.append(Rejected(record, run.errors[index]))
                continue
            frame = record.value
            outputs.append(Outgoing(DETECTIONS, frame["camera_id"], "Detections", {
                "camera_id": frame["camera_id"],
                "frame": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
                "session_id": frame["session_id"], "sequence": frame["sequence"],
                "capture_time": frame["capture_time"], "width": frame["width"], "height": frame["height"],
                "objects": [{"class_id": d.class_id, "class_name": d.class_name, "score": d.score,
                             "box": {"x1": d.x1, "y1": d.y1, "x2": d.x2, "y2": d.y2}} for d in detections],
                "model": self.model_id, "inference_ms": per_frame_ms, "detected_at": now_us,
            }))
            for detection in detections:
                OBJECTS.labels(detection.class_name).inc()
        FRAMES_DETECTED.inc(len(outputs))
        return outputs, rejected


def build_loop(runtime: ServiceRuntime[DetectorSettings], detector: Detector) -> ConsumeProduceLoop:
    settings = runtime.settings
    consumer = make_consumer(settings.kafka, settings.group_id, runtime.health,
                             **{"queued.max.messages.kbytes": settings.prefetch_mb * 1024})
    return ConsumeProduceLoop(
        service=SERVICE, group_id=settings.group_id, topics=[FRAMES], schema_for=lambda _t: "Frame",
        consumer=consumer, producer=make_producer(settings.kafka, SERVICE, runtime.health),
        serde=runtime.serde, handler=DetectionStage(detector).handle, health=runtime.health,
        batch_size=settings.max_batch, poll_timeout_s=settings.max_wait_ms / 1000,
    )


def main() -> None:
    runtime = start_service(SERVICE, DetectorSettings)
    runtime.health.set_ready(False, "loading and warming up the model")
    model = runtime.settings.model.model_copy(update={"max_batch_size": runtime.settings.max_batch})
    detector = Detector(model)
    warm_ms = detector.warmup()
    log.info("model %s (%s) ready on %s; warm batch of %d took %.0f ms", detector.identity.name,
             detector.identity.sha256[:12], detector.model.session.get_providers()[0], detector.batch_size, warm_ms)
    try:
        build_loop(runtime, detector).run(lambda: runtime.shutdown.requested)
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
