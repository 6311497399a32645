"""The shared consume→process→produce→commit loop against the real broker."""

from __future__ import annotations

import threading

from confluent_kafka import Consumer, Producer

from libs.health import Health
from libs.kafka import ConsumeProduceLoop, Incoming, Outgoing, Rejected, make_consumer, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import DLQ
from tests.kafka_helpers import frame_record, new_topics, read_topic, wait_for

SERDE = AvroSerde(shipped_catalog())


def activity(camera: str, score: float) -> dict:
    return {"camera_id": camera, "state": "ACTIVE", "motion_score": score, "since": 1, "timestamp": 2}


def test_plain_client_produces_and_consumes(kafka_settings: KafkaSettings, unique: str) -> None:
    topic = f"test.plain.{unique}"
    new_topics(kafka_settings, topic)
    producer = Producer({"bootstrap.servers": kafka_settings.bootstrap_servers})
    for index in range(10):
        producer.produce(topic, key=b"k", value=f"v{index}".encode())
    assert producer.flush(30) == 0
    values = [m.value() for m in read_topic(kafka_settings, topic, 10)]
    assert values == [f"v{i}".encode() for i in range(10)]


def run_loop_until(loop: ConsumeProduceLoop, condition, timeout_s: float = 60.0) -> None:
    loop.subscribe()
    try:
        wait_for(lambda: loop.run_once() >= 0 and condition(), timeout_s, "the loop to process the input")
    finally:
        loop.close()


def test_round_trip_through_loop_poison_goes_to_dlq_and_loop_continues(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    source, sink = f"test.in.{unique}", f"test.out.{unique}"
    new_topics(kafka_settings, source, sink, partitions=2)
    new_topics(kafka_settings, DLQ)
    producer = make_producer(kafka_settings, "test")
    poison_key, refused_key = f"cam-2-{unique}".encode(), f"cam-4-{unique}".encode()
    producer.produce(source, key=b"cam-1", value=SERDE.serialize(source, "CameraActivity", activity("cam-1", 0.1)))
    producer.produce(source, key=poison_key, value=b"\x00\x01poison, not avro")
    producer.produce(source, key=b"cam-3", value=SERDE.serialize(source, "CameraActivity", activity("cam-3", 0.3)))
    producer.produce(source, key=refused_key, value=SERDE.serialize(source, "CameraActivity", activity("cam-4", 0.4)))
    producer.flush(30)

    processed: list[str] = []

    def handler(batch: list[Incoming]) -> tuple[list[Outgoing], list[Rejected]]:
        outputs, rejected = [], []
        for record in batch:
            if record.value["camera_id"] == "cam-4":  # the core refuses this one
                rejected.append(Rejected(record, ValueError("core cannot handle cam-4")))
                continue
            processed.append(record.value["camera_id"])
            outputs.append(Outgoing(sink, record.key, "CameraActivity", record.value | {"state": "IDLE"}))
        return outputs, rejected

    group = f"test-group-{unique}"
    health = Health(60)
    loop = ConsumeProduceLoop(
        service="test",
        group_id=group,
        topics=[source],
        schema_for=lambda _t: "CameraActivity",
        consumer=make_consumer(kafka_settings, group),
        producer=producer,
        serde=SERDE,
        handler=handler,
        health=health,
    )
    run_loop_until(loop, lambda: sorted(processed) == ["cam-1", "cam-3"])
    assert health.ready

    out = read_topic(kafka_settings, sink, 2)
    decoded = sorted((SERDE.deserialize(sink, "CameraActivity", m.value()) for m in out), key=lambda v: v["camera_id"])
    assert [(v["camera_id"], v["state"]) for v in decoded] == [("cam-1", "IDLE"), ("cam-3", "IDLE")]

    # The DLQ is shared with other tests (some write registry framing): pick ours by key first.
    letters = read_topic(kafka_settings, DLQ, 2, predicate=lambda m: m.key() in (poison_key, refused_key))
    envelopes = {m.key(): SERDE.deserialize(DLQ, "DeadLetter", m.value()) for m in letters}
    poison = envelopes[poison_key]
    assert poison["value"] == b"\x00\x01poison, not avro"  # original bytes kept
    assert poison["error_type"] == "SerdeError" and poison["service"] == "test"
    assert poison["consumer_group"] == group and poison["source_offset"] >= 0
    assert envelopes[refused_key]["error_type"] == "ValueError"

    # Offsets were committed only after output was produced: the group has nothing left to read.
    consumer = Consumer(kafka_settings.client_config() | {"group.id": group})
    from confluent_kafka import TopicPartition

    committed = consumer.committed([TopicPartition(source, 0), TopicPartition(source, 1)], timeout=10)
    ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in committed]
    consumer.close()
    # Every partition that received records is committed up to its end (an empty one has no commit).
    assert [tp.offset if tp.offset >= 0 else 0 for tp in committed] == ends and sum(ends) == 4


def test_graceful_stop_flushes_and_closes(kafka_settings: KafkaSettings, unique: str) -> None:
    """Stopping delivers what is still queued in the producer, and the consumer leaves its group at once
    (its partitions move to another replica now, not after the session timeout)."""
    from confluent_kafka import ConsumerGroupState, TopicPartition

    from libs.kafka import make_admin

    source, sink = f"test.stop.{unique}", f"test.stop-out.{unique}"
    new_topics(kafka_settings, source, sink)
    feeder = make_producer(kafka_settings, "feeder")
    for index in range(3):
        feeder.produce(
            source, key=b"cam", value=SERDE.serialize(source, "CameraActivity", activity(f"cam-{index}", 0.1))
        )
    assert feeder.flush(30) == 0
    stop = threading.Event()
    group = f"g-{unique}"
    # A linger far longer than the test: only an explicit flush sends a queued record in time.
    producer = make_producer(kafka_settings, "t", **{"linger.ms": 600_000, "message.timeout.ms": 900_000})
    loop = ConsumeProduceLoop(
        service="test",
        group_id=group,
        topics=[source],
        schema_for=lambda _t: "CameraActivity",
        consumer=make_consumer(kafka_settings, group),
        producer=producer,
        serde=SERDE,
        handler=lambda batch: ([Outgoing(sink, r.key, "CameraActivity", r.value) for r in batch], []),
        health=Health(60),
    )
    worker = threading.Thread(target=loop.run, args=(stop.is_set,))
    worker.start()
    try:
        wait_for(lambda: loop.health.ready, 30, "partition assignment")
        read_topic(kafka_settings, sink, 3, timeout_s=60)  # the batch went through (flushed per batch)
        # Queued while the loop idles: nothing but the shutdown flush can deliver it within the test.
        loop.producing.send(Outgoing(sink, b"last", "CameraActivity", activity("cam-last", 0.9)))
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()
    last = read_topic(kafka_settings, sink, 1, timeout_s=20, predicate=lambda m: m.key() == b"last")
    assert SERDE.deserialize(sink, "CameraActivity", last[0].value())["camera_id"] == "cam-last"

    admin = make_admin(kafka_settings)
    (described,) = admin.describe_consumer_groups([group]).values()
    description = described.result(timeout=30)
    assert description.state == ConsumerGroupState.EMPTY and description.members == [], description
    # Querying committed offsets does not join the group.
    committed = Consumer(kafka_settings.client_config() | {"group.id": group})
    try:
        (offset,) = committed.committed([TopicPartition(source, 0)], timeout=10)
    finally:
        committed.close()
    assert offset.offset == 3


def test_delivery_failure_reprocesses_the_batch_nothing_lost_nothing_doubled_after_dedup(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    """A batch whose output cannot be delivered (here: a record over the evidence topic's size limit,
    until an operator raises it) is neither committed nor skipped: it is processed again until every
    output is delivered. Outputs delivered by a failed attempt come again (at least once), so a
    consumer deduplicating by key finds each exactly once."""
    import random

    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    from libs.kafka import make_admin

    source, sink, evidence = f"test.redo.{unique}", f"test.redo-out.{unique}", f"test.redo-evidence.{unique}"
    new_topics(kafka_settings, source, sink)
    new_topics(kafka_settings, evidence, config={"max.message.bytes": "2048"})
    feeder = make_producer(kafka_settings, "feeder")
    cameras = [f"cam-{index}" for index in range(5)]
    for camera in cameras:
        feeder.produce(
            source, key=camera.encode(), value=SERDE.serialize(source, "CameraActivity", activity(camera, 0.5))
        )
    assert feeder.flush(30) == 0
    big_jpeg = random.Random(5).randbytes(8192)  # incompressible: over the 2 KiB limit even with lz4
    attempts: dict[str, int] = {}

    def handler(batch: list[Incoming]) -> tuple[list[Outgoing], list[Rejected]]:
        outputs = []
        for record in batch:
            camera = record.value["camera_id"]
            attempts[camera] = attempts.get(camera, 0) + 1
            outputs.append(Outgoing(sink, record.key, "CameraActivity", record.value | {"state": "IDLE"}))
            if camera == "cam-3":
                outputs.append(
                    Outgoing(
                        evidence,
                        record.key,
                        "Frame",
                        frame_record(
                            camera,
                            record.offset,
                            big_jpeg,
                            capture_us=1,
                            pts_us=0,
                            source_partition=record.partition,
                            width=64,
                            height=64,
                            motion_score=0.5,
                            sampled_at=1,
                        ),
                    )
                )
        return outputs, []

    group = f"redo-{unique}"
    loop = ConsumeProduceLoop(
        service="test",
        group_id=group,
        topics=[source],
        schema_for=lambda _t: "CameraActivity",
        consumer=make_consumer(kafka_settings, group),
        producer=make_producer(kafka_settings, "redo"),
        serde=SERDE,
        handler=handler,
        health=Health(60),
    )
    stop = threading.Event()
    worker = threading.Thread(target=loop.run, args=(stop.is_set,))
    worker.start()
    probe = Consumer(kafka_settings.client_config() | {"group.id": group})  # reads commits, never joins
    try:
        wait_for(lambda: attempts.get("cam-3", 0) >= 3, 60, "the undeliverable batch to be processed again")
        (committed,) = probe.committed([TopicPartition(source, 0)], timeout=10)
        assert committed.offset < 0, "a batch with an undelivered output must not be committed"
        # The operator raises the limit: the next attempt delivers everything and commits.
        admin = make_admin(kafka_settings)
        resource = ConfigResource(
            ConfigResource.Type.TOPIC,
            evidence,
            incremental_configs=[
                ConfigEntry("max.message.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)
            ],
        )
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(timeout=30)
        wait_for(
            lambda: probe.committed([TopicPartition(source, 0)], timeout=10)[0].offset == len(cameras),
            60,
            "the batch to be delivered and committed",
        )
    finally:
        stop.set()
        worker.join(60)
        probe.close()
    assert not worker.is_alive()

    # Every attempt delivered its sink outputs: one per record processed, re-processed ones included.
    outputs = read_topic(kafka_settings, sink, sum(attempts.values()), timeout_s=30)
    decoded = [SERDE.deserialize(sink, "CameraActivity", m.value()) for m in outputs]
    by_key = {m.key(): value for m, value in zip(outputs, decoded, strict=True)}
    assert sorted(by_key) == [c.encode() for c in cameras] and {v["state"] for v in by_key.values()} == {"IDLE"}
    assert len(outputs) > len(cameras), "failed attempts delivered the other outputs again (at least once)"
    (delivered,) = read_topic(kafka_settings, evidence, 1, timeout_s=30)
    frame = SERDE.deserialize(evidence, "Frame", delivered.value())
    assert delivered.key() == b"cam-3" and frame["jpeg"] == big_jpeg
