"""The detector service on the real broker: frames of several cameras batched into one session.run,
each result kept with its own camera and frame; a corrupt JPEG goes to the DLQ."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from cctv.devstack.services import ServiceProcess
from libs.kafka import create_topics, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import DETECTIONS, DLQ, FRAMES, pipeline_topics
from tests.assets_fetch import DEFAULT_CACHE_DIR, fetch_stills
from tests.kafka_helpers import TopicWatcher, frame_record, free_port, wait_for
from tests.pipeline_helpers import service_env

SERDE = AvroSerde(shipped_catalog())


def still_frame(camera: str, sequence: int, jpeg: bytes) -> dict:
    """A Frame record of one of the 810x1080 stills."""
    return frame_record(camera, sequence, jpeg, capture_us=1_000_000 * sequence, width=810, height=1080, sampled_at=0)


@pytest.mark.parametrize("overlap", ["false", "true"], ids=["in-turn", "overlapped"])
def test_batches_across_cameras_keep_results_apart_and_corrupt_jpeg_goes_to_dlq(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path, overlap: str
) -> None:
    """Both loop shapes: preprocessing in turn with inference (the CPU default) and overlapped with it
    (the GPU default: the next full batch is prepared on its own thread while the model runs)."""
    create_topics(kafka_settings, pipeline_topics())
    stills = fetch_stills(DEFAULT_CACHE_DIR)
    bus, zidane = stills["bus.jpg"].read_bytes(), stills["zidane.jpg"].read_bytes()
    cameras = {f"bus-{unique}": bus, f"pitch-{unique}": zidane}
    broken = f"broken-{unique}"
    mine = set(cameras) | {broken}
    detections = TopicWatcher(kafka_settings, DETECTIONS, "Detections", SERDE, keys=[c.encode() for c in mine])
    letters = TopicWatcher(kafka_settings, DLQ, "DeadLetter", SERDE, keys=[broken.encode()])
    metrics_port = free_port()
    detector = ServiceProcess(
        "detector",
        service_env(kafka_settings.bootstrap_servers, http_port=metrics_port, group=f"detector-{unique}")
        | {
            "CCTV_MAX_BATCH": "8",
            "CCTV_MAX_WAIT_MS": "1000",
            "CCTV_QUEUE_HIGH": "4",
            "CCTV_QUEUE_LOW": "1",
            "CCTV_OVERLAP_PREPROCESSING": overlap,
        },
        tmp_path / "detector.log",
    ).start()
    produced: dict[tuple[int, int], tuple[str, int]] = {}  # (partition, offset) → (camera, sequence)
    try:
        wait_for(lambda: "assigned" in detector.log_text(), 90, "the detector to warm up and join")
        producer = make_producer(kafka_settings, "test")
        for sequence in range(6):  # interleaved cameras: batches mix them
            for camera, jpeg in cameras.items():
                producer.produce(
                    FRAMES,
                    key=camera,
                    value=SERDE.serialize(FRAMES, "Frame", still_frame(camera, sequence, jpeg)),
                    on_delivery=lambda _e, m, c=camera, s=sequence: produced.__setitem__(
                        (m.partition(), m.offset()), (c, s)
                    ),
                )
        corrupt = bus[: len(bus) // 3] + b"\x00" * 100
        producer.produce(FRAMES, key=broken, value=SERDE.serialize(FRAMES, "Frame", still_frame(broken, 0, corrupt)))
        producer.flush(30)
        wait_for(lambda: len(detections.snapshot()) >= 12, 120, "detections for all twelve frames")
        wait_for(lambda: letters.snapshot(), 60, "the corrupt frame on the DLQ")
        # The consumer thread resumes on its next turn after the queue drained: wait for it, not for luck.
        wait_for(lambda: "resumed" in detector.log_text(), 60, "the consumer to resume once the queue drained")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5) as response:
            assert response.status == 200
    finally:
        detector.stop()
        detections.close()
        letters.close()

    results = detections.snapshot()
    assert len(results) == 12 and not [r for r in results if r["camera_id"] == broken]
    for record in results:
        camera, sequence = produced[(record["frame"]["partition"], record["frame"]["offset"])]
        assert record["frame"]["topic"] == FRAMES
        assert (record["camera_id"], record["sequence"]) == (camera, sequence)
        names = [o["class_name"] for o in record["objects"] if o["score"] >= 0.3]
        if camera.startswith("bus-"):
            assert "bus" in names and names.count("person") >= 3, names
        else:
            assert names.count("person") == 2, names
        assert record["model"]["sha256"] and len(record["model"]["sha256"]) == 64
        assert all(0 <= o["box"]["x1"] < o["box"]["x2"] <= 1 for o in record["objects"])
    letter = letters.snapshot()[0]
    assert letter["error_type"] == "BadImageError" and letter["source_topic"] == FRAMES
    # Frames of both cameras went through shared batches: fewer session runs than frames.
    count = float(re.search(r"^cctv_detector_batch_size_count (\S+)$", metrics, re.M).group(1))
    total = float(re.search(r"^cctv_detector_batch_size_sum (\S+)$", metrics, re.M).group(1))
    assert total >= 13 and count < total, (count, total)
    # More frames arrived than the queue may hold: the consumer paused, then resumed once drained.
    log = detector.log_text()
    assert "paused" in log and log.index("paused") < log.index("resumed"), log[-2000:]
    assert ("preprocessing overlaps inference" in log) == (overlap == "true")
