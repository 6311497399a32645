"""Growing a compacted, keyed topic on the real broker: every key ends in exactly one partition, the one
the producers' partitioner picks, with its newest value (issue 20, item 7)."""

from __future__ import annotations

import subprocess
import sys

from confluent_kafka import Message, Producer
from confluent_kafka.admin import NewPartitions

from cctv.inventory_list import read_to_end
from cctv.topic_growth import grow_keyed_topic, key_partition, plan_moves
from libs.kafka import create_topics, make_admin
from libs.settings import KafkaSettings
from libs.topics import TopicSpec, scale_for_cameras


def _produce_all(settings: KafkaSettings, topic: str, records: dict[bytes, bytes]) -> dict[bytes, int]:
    """Keyed writes as every producer of the project does them (default partitioner); key → partition."""
    producer = Producer(settings.client_config() | {"acks": "all"})
    landed: dict[bytes, int] = {}

    def delivered(error, message: Message) -> None:  # type: ignore[no-untyped-def]
        assert error is None, error
        landed[message.key()] = message.partition()

    for key, value in records.items():
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    return landed


def _live(settings: KafkaSettings, topic: str) -> dict[bytes, dict[int, bytes]]:
    placements: dict[bytes, dict[int, bytes]] = {}

    def keep(message: Message) -> None:
        copies = placements.setdefault(message.key(), {})
        if message.value() is None:
            copies.pop(message.partition(), None)
        else:
            copies[message.partition()] = message.value()

    read_to_end(settings, topic, keep, 60)
    return {key: copies for key, copies in placements.items() if copies}


def test_plan_keeps_the_copy_in_the_target_partition() -> None:
    key = next(
        k
        for k in (f"cam-{i}".encode() for i in range(100))
        if len({key_partition(k, 8), key_partition(k, 5), key_partition(k, 3)}) == 3
    )
    target, current, original = key_partition(key, 8), key_partition(key, 5), key_partition(key, 3)
    # Written with 5 partitions since the naive growth: that copy is newer than the one from 3.
    move = plan_moves({key: {current: (1, b"v2"), original: (2, b"v1")}}, 8, 5)[0]
    assert (move.target, move.value, move.tombstone_partitions) == (target, b"v2", tuple(sorted((current, original))))
    # No copy where writers put it now: the newest timestamp wins.
    assert plan_moves({key: {target: (5, b"new"), original: (3, b"old")}}, 8, 5)[0].value == b"new"
    assert plan_moves({key: {original: (1, b"only")}}, 8, 3)[0].value == b"only"
    assert plan_moves({key: {target: (1, b"v")}}, 8, 5) == []


def test_growing_the_inventory_topic_neither_loses_nor_duplicates_a_camera(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = f"cctv.test-grow-{unique}"
    create_topics(kafka_settings, [TopicSpec(topic, "CameraConfig", 3, {"cleanup.policy": "compact"})])
    cameras = {f"cam-{i:04d}".encode(): f"v1-{i}".encode() for i in range(600)}
    landed = _produce_all(kafka_settings, topic, cameras)
    # The project's producers place keys exactly where key_partition says.
    assert all(partition == key_partition(key, 3) for key, partition in landed.items())

    # Someone added partitions the naive way and writers kept updating: some cameras now live twice.
    admin = make_admin(kafka_settings)
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result()
    updated = {key: b"v2-" + key for key in list(cameras)[::3]}
    _produce_all(kafka_settings, topic, updated)
    doubled = [key for key, copies in _live(kafka_settings, topic).items() if len(copies) > 1]
    assert doubled, "the naive growth must leave duplicates for this test to mean anything"

    growth = grow_keyed_topic(kafka_settings, topic, 12)
    assert (growth.partitions_before, growth.partitions_after, growth.keys) == (5, 12, 600)
    live = _live(kafka_settings, topic)
    assert len(live) == 600
    for key, copies in live.items():
        assert list(copies) == [key_partition(key, 12)], (key, copies)
        assert copies[key_partition(key, 12)] == updated.get(key, cameras[key]), key  # the newest value won
    # Nothing left to move: a second run changes nothing; later writes land on the same partition.
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "cctv.cli",
            "topics",
            "grow",
            topic,
            "--partitions",
            "12",
            "-b",
            kafka_settings.bootstrap_servers,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "12 -> 12 partitions; 0 of 600 keys moved" in rerun.stdout
    after = _produce_all(kafka_settings, topic, {b"cam-0007": b"v3"})
    assert after[b"cam-0007"] == next(iter(live[b"cam-0007"]))
    admin.delete_topics([topic])[topic].result()


def test_partitions_are_sized_for_the_largest_deployment() -> None:
    # 1,000 cameras per ingest replica and 25 % headroom: 12 inventory partitions serve 9,600 cameras.
    assert [scale_for_cameras(n) for n in (1, 4605, 9600, 9601)] == [1, 1, 1, 2]
    # Seoul-wide, 110,000 cameras: 138 replicas needed, 144 partitions.
    assert 12 * scale_for_cameras(110_000) == 144
