"""Detector service: batched ONNX Runtime inference over frames of many cameras.

Consumes: cctv.frames.v1 (group cctv-detector). Produces: cctv.detections.v1, cctv.dlq.v1.

The pure core is `detector.Detector` (model loading, preprocessing, output decoders, NMS); the handler
is `stage.DetectionStage`; the loop with its inference thread and backpressure is `batching.BatchingLoop`.
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge
from pydantic import Field, model_validator

from libs.inventory import InventoryFollower
from libs.kafka import make_consumer, make_producer
from libs.service import ServiceRuntime, start_service
from libs.settings import CommonSettings
from libs.topics import FRAMES
from services.detector.batching import BatchingLoop
from services.detector.config import DetectorModelConfig
from services.detector.detector import Detector
from services.detector.pose import Polygon, PoseEstimator, PoseModelConfig, PoseStage, pose_zone_polygons
from services.detector.stage import DetectionStage

log = logging.getLogger(__name__)
SERVICE = "detector"

EXECUTION_PROVIDER = Gauge(
    "cctv_detector_execution_provider", "1 for the ONNX Runtime provider the model runs on", ["provider"]
)


class DetectorSettings(CommonSettings):
    group_id: str = "cctv-detector"
    model: DetectorModelConfig = Field(default_factory=DetectorModelConfig)
    max_batch: int = Field(default=8, ge=1, le=256)
    max_wait_ms: int = Field(default=50, ge=1, le=10_000)
    # Frames librdkafka may prefetch while the model runs (bounds memory; JPEGs are ~50-200 kB).
    prefetch_mb: int = Field(default=64, ge=1)
    # Backpressure: pause partitions at queue_high queued frames, resume at queue_low.
    queue_high: int = Field(default=64, ge=1)
    queue_low: int = Field(default=16, ge=0)
    # Decode and preprocess the next batch while the model runs this one. Default (None): on when the
    # model runs on a GPU, where preprocessing would otherwise leave it idle; on a CPU both halves
    # compete for the same cores.
    overlap_preprocessing: bool | None = None
    # The pose stage (keypoints for falls and fighting); off unless set. Runs only for cameras whose
    # inventory entry has a rule of one of `pose_rule_types`.
    pose: PoseModelConfig | None = None
    pose_rule_types: list[str] = Field(default_factory=lambda: ["fall", "fighting"])

    @model_validator(mode="after")
    def _watermarks_ordered(self) -> DetectorSettings:
        if self.queue_low >= self.queue_high:
            raise ValueError(f"queue_low ({self.queue_low}) must be below queue_high ({self.queue_high})")
        return self


def pose_stage(settings: DetectorSettings, inventory: InventoryFollower | None) -> PoseStage | None:
    if settings.pose is None or inventory is None:
        return None
    wanted = frozenset(settings.pose_rule_types)

    def zones(camera_id: str) -> list[Polygon]:
        entry = inventory.get(camera_id)
        return [] if entry is None else pose_zone_polygons(entry.zones, wanted)

    # Only people touching a zone with a pose rule go through the pose model.
    return PoseStage(
        PoseEstimator(settings.pose), needs_pose=lambda camera_id: bool(zones(camera_id)), pose_zones=zones
    )


def build_loop(
    runtime: ServiceRuntime[DetectorSettings], detector: Detector, inventory: InventoryFollower | None = None
) -> BatchingLoop:
    settings = runtime.settings
    consumer = make_consumer(
        settings.kafka, settings.group_id, runtime.health, **{"queued.max.messages.kbytes": settings.prefetch_mb * 1024}
    )
    stage = DetectionStage(detector, pose_stage(settings, inventory))
    overlap = settings.overlap_preprocessing
    if overlap is None:
        overlap = detector.model.providers[0] != "CPUExecutionProvider"
    log.info("preprocessing %s inference", "overlaps" if overlap else "runs in turn with")
    return BatchingLoop(
        service=SERVICE,
        group_id=settings.group_id,
        topics=[FRAMES],
        schema_for=lambda _t: "Frame",
        consumer=consumer,
        producer=make_producer(settings.kafka, SERVICE, runtime.health),
        serde=runtime.serde,
        handler=stage.handle,
        health=runtime.health,
        batch_size=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        queue_high=settings.queue_high,
        queue_low=settings.queue_low,
        overlap=stage if overlap else None,
    )


def main() -> None:
    runtime = start_service(SERVICE, DetectorSettings)
    runtime.health.set_ready(False, "loading and warming up the model")
    model = runtime.settings.model.model_copy(update={"max_batch_size": runtime.settings.max_batch})
    detector = Detector(model)
    warm_ms = detector.warmup()
    log.info(
        "model %s (%s) ready on %s; warm batch of %d took %.0f ms; %d inference and %d preprocessing threads",
        detector.identity.name,
        detector.identity.sha256[:12],
        detector.model.session.get_providers()[0],
        detector.batch_size,
        warm_ms,
        detector.model.intra_op_threads,
        detector.preprocess_threads,
    )
    EXECUTION_PROVIDER.labels(detector.model.providers[0]).set(1)
    # Which cameras need keypoints is in the camera inventory: followed only when the pose stage is on.
    inventory = (
        InventoryFollower(runtime.settings.kafka, runtime.serde).start() if runtime.settings.pose is not None else None
    )
    try:
        build_loop(runtime, detector, inventory).run(lambda: runtime.shutdown.requested)
    finally:
        if inventory is not None:
            inventory.stop()
        detector.close()
        runtime.close()


if __name__ == "__main__":
    main()
