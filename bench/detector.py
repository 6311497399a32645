"""Detector: DetectionStage.handle (JPEG decode + preprocess + session.run + NMS + records) against a bare
session.run loop over the same preprocessed tensors at the same batch size; then the service's own
BatchingLoop through a real broker at one batch size."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import av
import numpy as np

from bench.common import SAMPLE_H264, CpuMeter, Result, percentile


def sample_jpegs(count: int, quality: int = 80) -> list[bytes]:
    """JPEGs of evenly spaced frames of the sample, as the frame-sampler makes them (full-size, q80)."""
    import simplejpeg

    with av.open(str(SAMPLE_H264)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    step = max(1, len(frames) // count)
    return [
        simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=quality, colorspace="RGB", fastdct=True)
        for frame in frames[::step][:count]
    ]


def frame_value(jpeg: bytes, index: int) -> dict[str, Any]:
    return {
        "camera_id": f"bench-cam-{index % 16:02d}",
        "session_id": "bench",
        "sequence": index,
        "capture_time": time.time_ns() // 1000,
        "pts_us": index * 100_000,
        "source_partition": 0,
        "source_offset": index,
        "width": 768,
        "height": 576,
        "jpeg": jpeg,
        "motion_score": 0.01,
        "reason": "MOTION",
        "sampled_at": time.time_ns() // 1000,
    }


def handler_worker(batch_size: int, seconds: float, providers: list[str] | None = None) -> dict[str, Any]:
    from libs.kafka import Incoming
    from libs.topics import FRAMES
    from services.detector.config import DetectorModelConfig
    from services.detector.detector import Detector
    from services.detector.model import run_batch
    from services.detector.preprocess import preprocess_batch
    from services.detector.stage import DetectionStage

    options = {"providers": providers} if providers else {}
    detector = Detector(DetectorModelConfig(max_batch_size=batch_size, **options))
    detector.warmup()
    stage = DetectionStage(detector)
    jpegs = sample_jpegs(max(32, 2 * batch_size))
    records = [
        Incoming(FRAMES, 0, i, None, frame_value(jpeg, i), None, raw=None)  # type: ignore[arg-type]
        for i, jpeg in enumerate(jpegs)
    ]
    batches = [records[i : i + batch_size] for i in range(0, len(records) - batch_size + 1, batch_size)]

    from services.detector.preprocess import decode_jpeg

    # The bare limit: the same session, the same preprocessed tensors, nothing else. Service and bare
    # batches alternate, so both see the same machine (other load, frequency) at the same moments.
    tensors = [
        preprocess_batch([decode_jpeg(r.value["jpeg"]) for r in batch], detector.cfg, detector.decoder).tensor
        for batch in batches
    ]
    latencies: list[float] = []
    bare_latencies: list[float] = []
    stages = {"decode": 0.0, "preprocess": 0.0, "inference": 0.0, "postprocess": 0.0, "records": 0.0}
    frames = bare_frames = 0
    service_wall = bare_wall = 0.0
    deadline = time.perf_counter() + 2 * seconds
    while time.perf_counter() < deadline:
        for batch, tensor in zip(batches, tensors, strict=False):
            started = time.perf_counter()
            outputs, _rejected = stage.handle(batch)
            elapsed = time.perf_counter() - started
            timings = detector.last_timings
            service_wall += elapsed
            latencies.append(elapsed * 1000)
            frames += len(outputs)
            for name in ("decode", "preprocess", "inference", "postprocess"):
                stages[name] += getattr(timings, f"{name}_ms")
            stages["records"] += elapsed * 1000 - timings.total_ms

            started = time.perf_counter()
            run_batch(detector.model.session, tensor)
            elapsed = time.perf_counter() - started
            bare_wall += elapsed
            bare_latencies.append(elapsed * 1000)
            bare_frames += len(tensor)
    return {
        "service_fps": frames / service_wall,
        "bare_fps": bare_frames / bare_wall,
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "bare_latency_p50_ms": percentile(bare_latencies, 50),
        "bare_latency_p99_ms": percentile(bare_latencies, 99),
        "stage_ms_per_frame": {name: total / frames for name, total in stages.items()},
        "threads": detector.model.intra_op_threads,
        "preprocess_threads": detector.preprocess_threads,
        "providers": list(detector.model.providers),
    }


def kafka_loop_worker(
    bootstrap: str, batch_size: int, frames: int, providers: list[str] | None = None, overlap: bool = False
) -> dict[str, Any]:
    """The service's own loop (BatchingLoop: consumer thread, bounded queue, inference thread, produce,
    commit) over Frame records already on the broker; timed from the end of the first batch."""
    import threading

    from libs.health import Health
    from libs.kafka import create_topics, make_consumer, make_producer
    from libs.serde import make_serde
    from libs.settings import KafkaSettings, RegistrySettings
    from libs.topics import FRAMES, pipeline_topics
    from services.detector.batching import BatchingLoop
    from services.detector.config import DetectorModelConfig
    from services.detector.detector import Detector
    from services.detector.main import DetectorSettings
    from services.detector.stage import DetectionStage

    settings = DetectorSettings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap), registry=RegistrySettings(url=None), max_batch=batch_size
    )
    create_topics(settings.kafka, pipeline_topics())
    serde = make_serde(settings.registry)
    producer = make_producer(settings.kafka, "bench-frames", **{"compression.type": "none"})
    jpegs = sample_jpegs(32)
    for index in range(frames):
        producer.produce(
            FRAMES,
            key=f"bench-cam-{index % 16:02d}".encode(),
            value=serde.serialize(FRAMES, "Frame", frame_value(jpegs[index % len(jpegs)], index)),
        )
        producer.poll(0)
    producer.flush(60)

    options = {"providers": providers} if providers else {}
    detector = Detector(DetectorModelConfig(max_batch_size=batch_size, **options))
    detector.warmup()
    stage = DetectionStage(detector)
    handler_ms: list[float] = []
    handled = {"frames": 0, "timed_frames": 0, "timing_from": 0.0, "last_end": 0.0}
    all_done = threading.Event()

    def on_inference_thread(work: Callable[[], Any], batch: list[Any]) -> Any:
        """The inference thread's share of one batch: preparation included unless it overlapped."""
        started = time.perf_counter()
        try:
            return work()
        finally:
            ended = time.perf_counter()
            if handled["frames"] == 0:  # group join and the first batch are not timed
                handled["timing_from"] = ended
            else:
                handler_ms.append((ended - started) * 1000)
                handled["timed_frames"] += len(batch)
            handled["frames"] += len(batch)
            handled["last_end"] = ended
            if handled["frames"] >= frames:
                all_done.set()

    class TimedStage:
        def handle(self, batch: list[Any]) -> Any:
            return on_inference_thread(lambda: stage.handle(batch), batch)

        def prepare(self, batch: list[Any]) -> Any:
            return stage.prepare(batch)

        def complete(self, batch: list[Any], prepared: Any) -> Any:
            return on_inference_thread(lambda: stage.complete(batch, prepared), batch)

    timed_stage = TimedStage()

    health = Health(60)
    group = f"bench-detector-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(
        settings.kafka, group, health, **{"queued.max.messages.kbytes": settings.prefetch_mb * 1024}
    )
    loop = BatchingLoop(
        service="detector",
        group_id=group,
        topics=[FRAMES],
        schema_for=lambda _t: "Frame",
        consumer=consumer,
        producer=make_producer(settings.kafka, "detector", health),
        serde=serde,
        handler=timed_stage.handle,
        health=health,
        batch_size=batch_size,
        max_wait_ms=settings.max_wait_ms,
        queue_high=settings.queue_high,
        queue_low=settings.queue_low,
        overlap=timed_stage if overlap else None,
    )
    runner = threading.Thread(target=loop.run, args=(all_done.is_set,), name="batching-loop")
    with CpuMeter() as meter:
        runner.start()
        all_done.wait(180)
        runner.join(60)
    detector.close()
    timed = handled["timed_frames"]
    wall_s = handled["last_end"] - handled["timing_from"]
    busy_ms = sum(handler_ms)
    return {
        "frames": timed,
        "fps": timed / wall_s if wall_s > 0 else 0.0,
        "cpu_s": meter.cpu_s,
        # Time the inference thread was not running the model's batch: waiting for frames Kafka had
        # not delivered yet (consume, Avro decode and produce run on the consumer thread meanwhile).
        "inference_idle_ms_per_frame": (wall_s * 1000 - busy_ms) / max(1, timed),
        "handler_ms_per_frame": busy_ms / max(1, timed),
        "batch_p50_ms": percentile(handler_ms, 50),
        "batch_p99_ms": percentile(handler_ms, 99),
    }


DEFAULT_BATCHES = (1, 4, 8)


def run(
    bootstrap: str | None,
    quick: bool,
    step: Any,
    batches: Sequence[int] = DEFAULT_BATCHES,
    providers: list[str] | None = None,
) -> list[Result]:
    """Handler vs bare session.run at each batch size (on `providers`, default: the best present), then,
    given a broker, the real Kafka loop at batch 8 (or the largest batch asked for)."""
    from bench.common import run_worker

    results: list[Result] = []
    seconds = 4.0 if quick else 12.0
    for batch_size in batches:
        step(f"detector: batch {batch_size}, DetectionStage.handle vs bare session.run")
        m = run_worker(
            "detector:handler_worker", {"batch_size": batch_size, "seconds": seconds, "providers": providers}
        )
        params = {
            "batch_size": batch_size,
            "model": "centernet-mobilenetv3-coco.onnx 512x512",
            "input": "768x576 JPEG q80 of vtest",
            "intra_op_threads": m["threads"],
            "preprocess_threads": m["preprocess_threads"],
            "providers": m["providers"],
        }
        results.append(
            Result.throughput(
                "detector",
                "frames per second",
                "frames/s",
                round(m["service_fps"], 2),
                round(m["bare_fps"], 2),
                **params,
            )
        )
        results.append(
            Result.cost(
                "detector",
                "batch latency p50",
                "ms",
                round(m["latency_p50_ms"], 1),
                round(m["bare_latency_p50_ms"], 1),
                **params,
            )
        )
        results.append(
            Result.cost(
                "detector",
                "batch latency p99",
                "ms",
                round(m["latency_p99_ms"], 1),
                round(m["bare_latency_p99_ms"], 1),
                **params,
            )
        )
        results.append(
            Result.plain(
                "detector",
                "stage breakdown per frame",
                "ms/frame",
                None,
                **params,
                **{k: round(v, 2) for k, v in m["stage_ms_per_frame"].items()},
            )
        )
    if bootstrap is None:
        return results
    loop_batch = 8 if 8 in batches else max(batches)
    handler_fps = next(r for r in results if r.metric == "frames per second" and r.params["batch_size"] == loop_batch)
    for overlap in (False, True):
        shape = "preprocessing overlapped with inference" if overlap else "preprocessing in turn with inference"
        step(f"detector: batch {loop_batch} through the service's BatchingLoop (Kafka), {shape}")
        loop = run_worker(
            "detector:kafka_loop_worker",
            {
                "bootstrap": bootstrap,
                "batch_size": loop_batch,
                "frames": 96 if quick else 320,
                "providers": providers,
                "overlap": overlap,
            },
        )
        results.append(
            Result.throughput(
                "detector",
                "frames per second through Kafka loop",
                "frames/s",
                round(loop["fps"], 2),
                handler_fps.bare or 0,
                batch_size=loop_batch,
                overlap=overlap,
                frames=loop["frames"],
                inference_idle_ms_per_frame=round(loop["inference_idle_ms_per_frame"], 2),
                handler_ms_per_frame=round(loop["handler_ms_per_frame"], 2),
                batch_p50_ms=round(loop["batch_p50_ms"], 1),
                batch_p99_ms=round(loop["batch_p99_ms"], 1),
            )
        )
    return results
