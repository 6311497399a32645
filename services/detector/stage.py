"""The detector's handler: a batch of Frame records in, one Detections record per frame out (corrupt
frames rejected to the dead-letter topic), in two halves so the next batch can be prepared while the
model runs this one."""

from __future__ import annotations

import time
from typing import Protocol

from prometheus_client import Counter, Histogram

from libs.kafka import Incoming, Outgoing, Rejected
from libs.records import DetectedObject, Detections, Frame, FrameRef, ModelId
from libs.topics import DETECTIONS
from services.detector.detector import DetectionRun, Detector, PreparedFrames
from services.detector.pose import PoseStage

FRAMES_DETECTED = Counter("cctv_detector_frames_total", "Frames run through the model")
OBJECTS = Counter("cctv_detector_objects_total", "Objects detected", ["class_name"])
STAGE_MS = Histogram(
    "cctv_detector_stage_ms",
    "Milliseconds per frame by stage",
    ["stage"],
    buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
BATCH_SIZE = Histogram("cctv_detector_batch_size", "Frames per session.run", buckets=(1, 2, 4, 8, 16, 32, 64))


class PreparingStage(Protocol):
    """A batch's work in two halves, so the next batch's first half can run during this one's second."""

    def prepare(self, batch: list[Incoming]) -> PreparedFrames: ...

    def complete(self, batch: list[Incoming], prepared: PreparedFrames) -> tuple[list[Outgoing], list[Rejected]]: ...


class DetectionStage:
    """Core call for one batch: JPEG decode → preprocess → one session.run per model batch → NMS."""

    def __init__(self, detector: Detector, pose: PoseStage | None = None) -> None:
        self.detector = detector
        # Keypoints for people on cameras whose rules need them (falls, fighting); None: no pose stage.
        self.pose = pose
        identity = detector.identity
        self.model_id = ModelId(identity.name, identity.version, identity.sha256)

    def handle(self, batch: list[Incoming]) -> tuple[list[Outgoing], list[Rejected]]:
        return self.complete(batch, self.prepare(batch))

    def prepare(self, batch: list[Incoming]) -> PreparedFrames:
        """The CPU half: JPEG decode and preprocessing."""
        return self.detector.prepare_jpegs([record.value["jpeg"] for record in batch])

    def complete(self, batch: list[Incoming], prepared: PreparedFrames) -> tuple[list[Outgoing], list[Rejected]]:
        """The model half: inference, NMS, one Detections record per frame (corrupt frames rejected)."""
        run = self.detector.infer(prepared)
        images = max(1, run.timings.images)
        per_frame_ms = run.timings.inference_ms / images
        for stage in ("decode", "preprocess", "inference", "postprocess"):
            STAGE_MS.labels(stage).observe(getattr(run.timings, f"{stage}_ms") / images)
        BATCH_SIZE.observe(len(batch))
        now_us = time.time_ns() // 1000
        outputs: list[Outgoing] = []
        rejected: list[Rejected] = []
        results = run.results if self.pose is None else self._with_keypoints(batch, run)
        for index, (record, detections) in enumerate(zip(batch, results, strict=True)):
            if index in run.errors:
                rejected.append(Rejected(record, run.errors[index]))
                continue
            frame = Frame.from_avro(record.value)
            detected = Detections(
                camera_id=frame.camera_id,
                frame=FrameRef(record.topic, record.partition, record.offset),
                session_id=frame.session_id,
                sequence=frame.sequence,
                capture_time_us=frame.capture_time_us,
                width=frame.width,
                height=frame.height,
                objects=detections,
                model=self.model_id,
                inference_ms=per_frame_ms,
                detected_at_us=now_us,
            )
            outputs.append(Outgoing(DETECTIONS, detected.camera_id, "Detections", detected.to_avro()))
            for detection in detections:
                OBJECTS.labels(detection.class_name).inc()
        FRAMES_DETECTED.inc(len(outputs))
        return outputs, rejected

    def _with_keypoints(self, batch: list[Incoming], run: DetectionRun) -> list[list[DetectedObject]]:
        """One pose-model call for the frames of all cameras in this batch that need it."""
        assert self.pose is not None
        camera_ids = [str(record.value["camera_id"]) for record in batch]
        images = [
            self.pose.image(record.value["jpeg"], run.images[index], self.detector.cfg.input_size)
            if index not in run.errors
            and self.pose.wants(camera_ids[index], run.results[index], record.value["width"], record.value["height"])
            else None
            for index, record in enumerate(batch)
        ]
        started = time.perf_counter()
        with_keypoints = self.pose.add_keypoints(camera_ids, images, run.results)
        STAGE_MS.labels("pose").observe(
            (time.perf_counter() - started) * 1000 / max(1, sum(i is not None for i in images))
        )
        return with_keypoints
