"""Bad records on every consumer's input (issue 20, item 3): random and truncated Avro, unknown and wrong
schema ids, unknown single-object fingerprints, empty and oversized values, on the real broker and
registry. Every case must end as a dead letter of the service that reads the topic, and no service may
crash."""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from cctv.devstack.services import PIPELINE_SERVICES
from libs.cameras import CameraEntry
from libs.kafka import create_topics
from libs.serde import make_serde
from libs.settings import KafkaSettings, RegistrySettings
from libs.topics import CAMERAS, DETECTIONS, DLQ, FRAMES, VIDEO_PACKETS, pipeline_topics
from tests.pipeline_helpers import service_env, start_pipeline

# Input topic → the service that must dead-letter bad records found there.
READERS = {CAMERAS: "ingest", VIDEO_PACKETS: "frame-sampler", FRAMES: "detector", DETECTIONS: "alert-router"}


def fuzz_cases(valid_camera: bytes, rng: random.Random) -> dict[str, bytes]:
    """Bad values; `valid_camera` is a registry-framed CameraConfig (a wrong schema on other topics)."""
    unknown_id = struct.pack(">bI", 0, 2_000_000_000)
    cases = {f"random-{n}": rng.randbytes(n) for n in (1, 5, 64, 4096)}
    cases |= {
        "empty": b"",
        "unknown-schema-id": unknown_id + rng.randbytes(40),
        "truncated-avro": valid_camera[: len(valid_camera) // 2],
        "truncated-after-header": valid_camera[:6],
        "trailing-garbage": valid_camera + rng.randbytes(16),
        "unknown-fingerprint": b"\xc3\x01" + rng.randbytes(8) + rng.randbytes(30),
        "oversized": unknown_id + rng.randbytes(3 * 1024 * 1024),
    }
    return cases


def test_every_consumer_dead_letters_every_bad_record(
    kafka_settings: KafkaSettings, schema_registry, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    serde = make_serde(RegistrySettings(url=schema_registry.url))
    camera = CameraEntry(camera_id=f"fuzz-{unique}", stream_url="rtsp://127.0.0.1:9/none", enabled=False)
    valid_camera = serde.serialize(CAMERAS, "CameraConfig", camera.to_record(int(time.time() * 1000)))
    cases = fuzz_cases(valid_camera, random.Random(20))
    expected = {
        (topic, f"fuzz-{unique}-{name}")
        for topic in READERS
        for name in cases
        if not (topic == CAMERAS and name == "trailing-garbage")
    }  # Avro ignores bytes past the record

    dlq = Consumer(kafka_settings.client_config() | {"group.id": f"fuzz-dlq-{unique}", "enable.auto.commit": False})
    partitions = dlq.list_topics(DLQ, timeout=10).topics[DLQ].partitions
    dlq.assign(
        [TopicPartition(DLQ, p, dlq.get_watermark_offsets(TopicPartition(DLQ, p), timeout=10)[1]) for p in partitions]
    )

    services = start_pipeline(service_env(kafka_settings.bootstrap_servers, schema_registry.url), unique, tmp_path)
    producer = Producer(kafka_settings.client_config() | {"message.max.bytes": 8 * 1024 * 1024})
    for topic in READERS:
        for name, value in cases.items():
            producer.produce(topic, key=f"fuzz-{unique}-{name}".encode(), value=value)
    assert producer.flush(60) == 0

    seen: dict[tuple[str, str], dict] = {}
    try:
        deadline = time.monotonic() + 240
        while not expected <= set(seen) and time.monotonic() < deadline:
            message = dlq.poll(0.5)
            if message is None or message.error():
                for service in services:
                    assert service.alive, f"{service.name} died:\n{service.log_text()[-3000:]}"
                continue
            key = (message.key() or b"").decode(errors="replace")
            if key.startswith(f"fuzz-{unique}-"):
                letter = serde.deserialize(DLQ, "DeadLetter", message.value())
                seen[(letter["source_topic"], key)] = letter
        for service in services:
            assert service.alive, f"{service.name} died:\n{service.log_text()[-3000:]}"
    finally:
        dlq.close()
        codes = {service.name: service.stop() for service in services}
        # The inventory is compacted and shared: tombstones, so later replicas do not meet these records.
        for name in cases:
            producer.produce(CAMERAS, key=f"fuzz-{unique}-{name}".encode(), value=None)
        producer.flush(30)
    missing = sorted(expected - set(seen))
    assert not missing, f"{len(missing)} cases not dead-lettered: {missing[:10]}"
    for (topic, key), letter in seen.items():
        if (topic, key) in expected:
            assert letter["service"] == READERS[topic], (topic, key, letter["service"])
            assert letter["value"] == cases[key.removeprefix(f"fuzz-{unique}-")]  # original bytes kept
            assert letter["error_message"], (topic, key)
    assert codes == dict.fromkeys(PIPELINE_SERVICES, 0), codes
    print(f"\n{len(expected)} bad records on {len(READERS)} consumers: all dead-lettered, no crash")
