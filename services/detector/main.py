"""Detector service loop: batched ONNX Runtime inference over frames of many cameras.

Consumes: cctv.frames.v1 (group cctv-detector). Produces: cctv.detections.v1, cctv.dlq.v1.

Two threads: the consumer thread fetches and decodes records into a bounded queue; the inference
thread takes up to `max_batch` frames of any cameras (waiting at most `max_wait_ms` after the first)
into one `session.run` and produces the results. With `overlap_preprocessing` (default on a GPU) a
third thread decodes and preprocesses the next full batch while the model runs the current one.
When the queue reaches `queue_high` frames the consumer pauses its partitions and resumes them once
the queue has drained to `queue_low`, so memory stays bounded however far behind the detector is.
Offsets are committed by the consumer thread only for frames whose results were delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from pydantic import Field, model_validator

from libs.kafka import (
    ConsumeProduceLoop,
    DeliveryFailed,
    Incoming,
    Outgoing,
    Rejected,
    make_consumer,
    make_producer,
)
from libs.metrics import BATCH_SECONDS, PAUSED_PARTITIONS as PAUSED
from libs.service import ServiceRuntime, start_service
from libs.settings import CommonSettings
from libs.topics import DETECTIONS, FRAMES
from services.detector.core import Detector, DetectorModelConfig, PreparedFrames

log = logging.getLogger(__name__)
SERVICE = "detector"

FRAMES_DETECTED = Counter("cctv_detector_frames_total", "Frames run through the model")
OBJECTS = Counter("cctv_detector_objects_total", "Objects detected", ["class_name"])
STAGE_MS = Histogram("cctv_detector_stage_ms", "Milliseconds per frame by stage", ["stage"],
                     buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
EXECUTION_PROVIDER = Gauge("cctv_detector_execution_provider", "1 for the ONNX Runtime provider the model runs on",
                           ["provider"])
BATCH_SIZE = Histogram("cctv_detector_batch_size", "Frames per session.run", buckets=(1, 2, 4, 8, 16, 32, 64))


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

    @model_validator(mode="after")
    def _watermarks_ordered(self) -> "DetectorSettings":
        if self.queue_low >= self.queue_high:
            raise ValueError(f"queue_low ({self.queue_low}) must be below queue_high ({self.queue_high})")
        return self


class DetectionStage:
    """Core call for one batch: JPEG decode → preprocess → one session.run per model batch → NMS."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        identity = detector.identity
        self.model_id = {"name": identity.name, "version": identity.version, "sha256": identity.sha256}

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


class PreparingStage(Protocol):
    """A batch's work in two halves, so the next batch's first half can run during this one's second."""

    def prepare(self, batch: list[Incoming]) -> PreparedFrames: ...

    def complete(self, batch: list[Incoming], prepared: PreparedFrames) -> tuple[list[Outgoing], list[Rejected]]: ...


class BatchingLoop(ConsumeProduceLoop):
    """The shared loop's decoding, DLQ, commit and rebalance handling, with inference on its own
    thread behind a bounded queue (see the module docstring)."""

    def __init__(self, *, max_wait_ms: int, queue_high: int, queue_low: int,
                 overlap: PreparingStage | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs, on_revoke=self._drop_revoked)
        # With a stage to overlap, the next full batch is prepared on its own thread during inference.
        self.overlap = overlap
        self.preparing = ThreadPoolExecutor(1, thread_name_prefix="prepare") if overlap is not None else None
        self.max_wait_s = max_wait_ms / 1000
        self.queue_high, self.queue_low = queue_high, queue_low
        self.queue: deque[Incoming] = deque()
        self.done: list[Message] = []  # processed and produced, waiting for delivery + commit
        self.cond = threading.Condition()
        self.busy = threading.Lock()  # held by the inference thread while a batch is in flight
        self.paused = False
        self.stopping = threading.Event()

    # ---- consumer thread ----------------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool]) -> None:
        worker = threading.Thread(target=self._infer_forever, name="inference", daemon=True)
        worker.start()
        self.subscribe()
        try:
            while not stop():
                messages = self.consumer.consume(self.batch_size, 0.05)
                self.health.beat()
                if self.assignment:
                    self.probe.check()
                if messages:
                    decoded = self.decode(messages)
                    kept = {id(record.raw) for record in decoded}
                    with self.cond:
                        self.queue.extend(decoded)
                        # Dead-lettered records count as processed once the DLQ write is delivered.
                        self.done.extend(m for m in messages if id(m) not in kept and not m.error())
                        self.cond.notify()
                self._apply_backpressure()
                self._commit_done()
        finally:
            self.stopping.set()
            with self.cond:
                self.cond.notify_all()
            worker.join(60)
            self._commit_done()
            self.close()

    def _apply_backpressure(self) -> None:
        with self.cond:
            queued = len(self.queue)
        if not self.paused and queued >= self.queue_high:
            self.consumer.pause(self.consumer.assignment())
            self.paused = True
            PAUSED.labels(SERVICE).set(len(self.consumer.assignment()))
            log.info("backpressure: %d frames queued, paused %d partitions", queued, len(self.consumer.assignment()))
        elif self.paused and queued <= self.queue_low:
            self.consumer.resume(self.consumer.assignment())
            self.paused = False
            PAUSED.labels(SERVICE).set(0)
            log.info("backpressure: queue drained to %d frames, resumed", queued)

    def _commit_done(self) -> None:
        with self.cond:
            done, self.done = self.done, []
        if not done:
            return
        try:
            self.producing.flush()
        except DeliveryFailed as error:
            log.error("delivery failed, re-processing from the first undelivered frames: %s", error)
            self._rewind(done)
            return
        self._commit(done)

    def _drop_revoked(self, partitions: list[TopicPartition]) -> None:
        """Rebalance: finish the batch in flight, commit what is done, forget queued frames of lost
        partitions (their new owner reads them again from the committed offsets)."""
        revoked = {(p.topic, p.partition) for p in partitions}
        with self.busy:
            with self.cond:
                self.queue = deque(r for r in self.queue if (r.topic, r.partition) not in revoked)
            self._commit_done()
        if self.paused:
            self.consumer.resume(self.consumer.assignment())
            self.paused = False

    # ---- inference thread ---------------------------------------------------------------------------------

    def _take_batch(self) -> list[Incoming]:
        with self.cond:
            while not self.queue and not self.stopping.is_set():
                self.cond.wait(0.5)
            deadline = time.monotonic() + self.max_wait_s
            while len(self.queue) < self.batch_size and not self.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
            return [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]

    def _take_full_batch_now(self) -> list[Incoming]:
        """A whole batch if that many frames are already queued, else nothing (never waits)."""
        with self.cond:
            if len(self.queue) < self.batch_size:
                return []
            return [self.queue.popleft() for _ in range(self.batch_size)]

    def _infer_forever(self) -> None:
        following: tuple[list[Incoming], Future[PreparedFrames]] | None = None
        while following is not None or not (self.stopping.is_set() and not self.queue):
            if following is not None:
                batch, preparing = following
                following = None
            else:
                batch = self._take_batch()
                if not batch:
                    continue
                preparing = None
            # A rebalance may have dropped these frames' partitions meanwhile: their results are still
            # produced, and their offsets are not committed here (the new owner re-reads them).
            with self.busy:
                started = time.perf_counter()
                if self.overlap is None or self.preparing is None:
                    outputs, rejected = self.handler(batch)
                else:
                    prepared = preparing.result() if preparing is not None else self.overlap.prepare(batch)
                    upcoming = self._take_full_batch_now()
                    if upcoming:
                        following = (upcoming, self.preparing.submit(self.overlap.prepare, upcoming))
                    outputs, rejected = self.overlap.complete(batch, prepared)
                for item in rejected:
                    self.dead_letters.publish(item.record.raw, item.error)  # type: ignore[union-attr]
                for out in outputs:
                    self.producing.send(out)
                with self.cond:
                    self.done.extend(record.raw for record in batch)
                BATCH_SECONDS.labels(SERVICE).observe(time.perf_counter() - started)
        if self.preparing is not None:
            self.preparing.shutdown(wait=True)


def build_loop(runtime: ServiceRuntime[DetectorSettings], detector: Detector) -> BatchingLoop:
    settings = runtime.settings
    consumer = make_consumer(settings.kafka, settings.group_id, runtime.health,
                             **{"queued.max.messages.kbytes": settings.prefetch_mb * 1024})
    stage = DetectionStage(detector)
    overlap = settings.overlap_preprocessing
    if overlap is None:
        overlap = detector.model.providers[0] != "CPUExecutionProvider"
    log.info("preprocessing %s inference", "overlaps" if overlap else "runs in turn with")
    return BatchingLoop(
        service=SERVICE, group_id=settings.group_id, topics=[FRAMES], schema_for=lambda _t: "Frame",
        consumer=consumer, producer=make_producer(settings.kafka, SERVICE, runtime.health),
        serde=runtime.serde, handler=stage.handle, health=runtime.health,
        batch_size=settings.max_batch, max_wait_ms=settings.max_wait_ms,
        queue_high=settings.queue_high, queue_low=settings.queue_low, overlap=stage if overlap else None,
    )


def main() -> None:
    runtime = start_service(SERVICE, DetectorSettings)
    runtime.health.set_ready(False, "loading and warming up the model")
    model = runtime.settings.model.model_copy(update={"max_batch_size": runtime.settings.max_batch})
    detector = Detector(model)
    warm_ms = detector.warmup()
    log.info("model %s (%s) ready on %s; warm batch of %d took %.0f ms; %d inference and %d preprocessing threads",
             detector.identity.name, detector.identity.sha256[:12], detector.model.session.get_providers()[0],
             detector.batch_size, warm_ms, detector.model.intra_op_threads, detector.preprocess_threads)
    EXECUTION_PROVIDER.labels(detector.model.providers[0]).set(1)
    try:
        build_loop(runtime, detector).run(lambda: runtime.shutdown.requested)
    finally:
        detector.close()
        runtime.close()


if __name__ == "__main__":
    main()
