"""Kafka transport: our records through make_producer / make_consumer + Avro serde against Kafka's own
ProducerPerformance / ConsumerPerformance at the same record size and count, on the same broker."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from typing import Any

from bench.common import REPO, SAMPLE_H264, Result

MIB = 1024 * 1024
# The producer settings each service uses for that topic (main.py): compressed video and JPEG are sent as is.
RECORD_KINDS = {
    "VideoPacket": {"topic_schema": "VideoPacket", "compression": "none"},
    "Frame": {"topic_schema": "Frame", "compression": "none"},
    "Detections": {"topic_schema": "Detections", "compression": "lz4"},
}


def sample_values(kind: str, count: int) -> list[dict[str, Any]]:
    """Realistic record values: real H.264 packets, real JPEGs, a busy street's detections."""
    if kind == "VideoPacket":
        from bench.sampler import video_packet_values

        packets = video_packet_values(SAMPLE_H264, "bench-cam-00")
        return [packets[i % len(packets)] for i in range(count)]
    if kind == "Frame":
        from bench.detector import frame_value, sample_jpegs

        jpegs = sample_jpegs(32)
        return [frame_value(jpegs[i % len(jpegs)], i) for i in range(count)]
    objects = [
        {
            "class_id": 0,
            "class_name": "person",
            "score": 0.5 + i / 40,
            "box": {"x1": 0.1 + i / 50, "y1": 0.2, "x2": 0.15 + i / 50, "y2": 0.4},
        }
        for i in range(25)
    ]
    return [
        {
            "camera_id": f"bench-cam-{i % 16:02d}",
            "frame": {"topic": "cctv.frames.v1", "partition": i % 12, "offset": i},
            "session_id": "bench",
            "sequence": i,
            "capture_time": time.time_ns() // 1000,
            "width": 768,
            "height": 576,
            "objects": objects,
            "model": {"name": "centernet-mobilenetv3-coco", "version": "1", "sha256": "0" * 64},
            "inference_ms": 35.0,
            "detected_at": time.time_ns() // 1000,
        }
        for i in range(count)
    ]


def _topic(bootstrap: str, name: str) -> None:
    from libs.kafka import create_topics
    from libs.settings import KafkaSettings
    from libs.topics import TopicSpec

    create_topics(
        KafkaSettings(bootstrap_servers=bootstrap), [TopicSpec(name, "bench", 12, {"max.message.bytes": str(8 * MIB)})]
    )


def ours_worker(bootstrap: str, kind: str, count: int) -> dict[str, Any]:
    from libs.kafka import make_consumer, make_producer
    from libs.serde import make_serde
    from libs.settings import KafkaSettings, RegistrySettings

    settings = KafkaSettings(bootstrap_servers=bootstrap)
    serde = make_serde(RegistrySettings(url=None))
    topic = f"bench.transport.ours.{kind}.{uuid.uuid4().hex[:6]}"
    _topic(bootstrap, topic)
    values = sample_values(kind, count)
    spec = RECORD_KINDS[kind]
    producer = make_producer(settings, "bench", **{"compression.type": spec["compression"]})
    producer.list_topics(topic, timeout=10)  # connection and metadata before the clock starts
    total_bytes = 0
    started = time.perf_counter()
    for value in values:
        payload = serde.serialize(topic, spec["topic_schema"], value)
        total_bytes += len(payload)
        while True:
            try:
                producer.produce(topic, key=value["camera_id"].encode(), value=payload)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("records undelivered after 120 s")
    produce_s = time.perf_counter() - started

    consumer = make_consumer(settings, f"bench-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    received = 0
    first: float | None = None
    deadline = time.monotonic() + 120
    while received < count and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.5):
            if message.error():
                continue
            first = first or time.perf_counter()
            serde.deserialize(topic, spec["topic_schema"], message.value())
            received += 1
    consume_s = time.perf_counter() - (first or time.perf_counter())
    consumer.close()
    return {
        "count": count,
        "bytes": total_bytes,
        "mean_size": total_bytes / count,
        "produce_s": produce_s,
        "consume_s": consume_s,
        "received": received,
        "topic": topic,
    }


def _java(main_class: str, *args: str, timeout_s: float = 300) -> str:
    command = [
        "java",
        "-Xmx512m",
        "-cp",
        str(REPO / ".cache" / "kafka" / "lib" / "*"),
        f"org.apache.kafka.tools.{main_class}",
        *args,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if completed.returncode != 0:
        raise RuntimeError(f"{main_class} failed: {completed.stderr[-2000:]}")
    return completed.stdout


def kafka_tools(bootstrap: str, kind: str, count: int, record_size: int) -> dict[str, Any]:
    topic = f"bench.transport.tools.{kind}.{uuid.uuid4().hex[:6]}"
    _topic(bootstrap, topic)
    out = _java(
        "ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(count),
        "--record-size",
        str(record_size),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={bootstrap}",
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=5",
        f"compression.type={RECORD_KINDS[kind]['compression']}",
        "max.request.size=8388608",
    )
    summary = [line for line in out.splitlines() if "records sent" in line][-1]
    produce_rps = float(re.search(r"([\d.]+) records/sec", summary).group(1))
    out = _java(
        "ConsumerPerformance",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--messages",
        str(count),
        "--timeout",
        "60000",
        "--group",
        f"bench-tools-{uuid.uuid4().hex[:6]}",
    )
    lines = [line for line in out.splitlines() if line.strip()]
    header = [h.strip() for h in lines[-2].split(",")]
    row = dict(zip(header, (v.strip() for v in lines[-1].split(",")), strict=False))
    return {
        "produce_rps": produce_rps,
        "produce_mbps": produce_rps * record_size / MIB,
        "consume_rps": float(row["fetch.nMsg.sec"]),
        "consume_mbps": float(row["fetch.MB.sec"]),
    }


def run(bootstrap: str, quick: bool, step: Any) -> list[Result]:
    from bench.common import run_worker

    counts = {"VideoPacket": 20_000, "Frame": 2_000, "Detections": 50_000}
    if quick:
        counts = {kind: count // 5 for kind, count in counts.items()}
    results: list[Result] = []
    for kind, count in counts.items():
        step(f"kafka: {count} {kind} records, our producer/consumer + serde")
        ours = run_worker("transport:ours_worker", {"bootstrap": bootstrap, "kind": kind, "count": count})
        size = round(ours["mean_size"])
        step(f"kafka: {count} records of {size} B, ProducerPerformance / ConsumerPerformance")
        tools = kafka_tools(bootstrap, kind, count, size)
        params = {
            "record": kind,
            "count": count,
            "mean_record_bytes": size,
            "compression": RECORD_KINDS[kind]["compression"],
            "acks": "all",
            "idempotent": True,
            "partitions": 12,
            "note": "MB = 2^20 bytes of record values",
        }
        produce_rps = count / ours["produce_s"]
        consume_rps = ours["received"] / max(1e-9, ours["consume_s"])
        results += [
            Result.throughput(
                "kafka",
                f"produce {kind} records/s",
                "records/s",
                round(produce_rps),
                round(tools["produce_rps"]),
                **params,
            ),
            Result.throughput(
                "kafka",
                f"produce {kind} MB/s",
                "MB/s",
                round(produce_rps * size / MIB, 2),
                round(tools["produce_mbps"], 2),
                **params,
            ),
            Result.throughput(
                "kafka",
                f"consume {kind} records/s",
                "records/s",
                round(consume_rps),
                round(tools["consume_rps"]),
                **params,
            ),
            Result.throughput(
                "kafka",
                f"consume {kind} MB/s",
                "MB/s",
                round(consume_rps * size / MIB, 2),
                round(tools["consume_mbps"], 2),
                **params,
            ),
        ]
    return results
