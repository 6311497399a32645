"""Grow a compacted, keyed topic (e.g. the camera inventory) without losing or duplicating a key.

Adding partitions changes where the key partitioner puts a key: an existing camera's record stays in
its old partition while its next update lands in the new one, so two partitions (and two ingest
replicas) would hold it, and deleting it would leave the old copy alive. After adding partitions,
this moves every key whose partition changed in ONE transaction: its latest record is written to the
partition the partitioner now picks and a tombstone to each old partition. read_committed consumers
(ingest, the inventory readers) see both at once: the old owner stops the camera, the new one starts it.

Writes to the topic must pause while it runs (it reads, then writes; an update in between could be
overwritten by the older copy it moves). A run that finds nothing to move changes nothing, so it can
be re-run safely, e.g. after a crash before the commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from confluent_kafka import Message, Producer
from confluent_kafka.admin import NewPartitions

from cctv.inventory_list import read_to_end
from libs.kafka import key_partition, make_admin
from libs.settings import KafkaSettings


@dataclass(frozen=True)
class Move:
    key: bytes
    value: bytes
    target: int
    tombstone_partitions: tuple[int, ...]


def plan_moves(placements: dict[bytes, dict[int, tuple[int, bytes]]], partitions: int, written_with: int) -> list[Move]:
    """Moves that leave each live key only in its partitioner's partition. `placements`: key → partition →
    (timestamp, value) of its latest live record there; `written_with`: the partition count writers used
    until now. The newest copy is where writers put the key with that count (a copy in the target
    partition may be a stale one from before an earlier growth); failing that, the newest timestamp."""
    moves = []
    for key, copies in placements.items():
        target = key_partition(key, partitions)
        stray = tuple(sorted(p for p in copies if p != target))
        if not stray:
            continue
        current = key_partition(key, written_with)
        value = copies[current][1] if current in copies else max(copies.values())[1]
        moves.append(Move(key, value, target, stray))
    return moves


@dataclass(frozen=True)
class Growth:
    partitions_before: int
    partitions_after: int
    keys: int
    moved: int


def grow_keyed_topic(settings: KafkaSettings, topic: str, partitions: int, timeout_s: float = 300.0) -> Growth:
    admin = make_admin(settings)
    before = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    if partitions < before:
        raise ValueError(f"{topic} has {before} partitions; Kafka cannot reduce them to {partitions}")
    if partitions > before:
        admin.create_partitions([NewPartitions(topic, partitions)], request_timeout=30)[topic].result()
    placements: dict[bytes, dict[int, tuple[int, bytes]]] = {}

    def keep(message: Message) -> None:
        key, partition, value = message.key() or b"", message.partition(), message.value()
        assert partition is not None  # a consumed record always has one
        copies = placements.setdefault(key, {})
        if value is None:
            copies.pop(partition, None)
        else:
            copies[partition] = (message.timestamp()[1], value)

    read_to_end(settings, topic, keep, timeout_s)
    live = {key: copies for key, copies in placements.items() if copies}
    moves = plan_moves(live, partitions, before)
    if moves:
        producer = Producer(
            settings.client_config()
            | {
                "transactional.id": f"cctv-inventory-grow-{uuid.uuid4()}",
                "enable.idempotence": True,
                "acks": "all",
            }
        )
        producer.init_transactions(30)
        producer.begin_transaction()
        try:
            for move in moves:
                _produce(producer, topic, move.key, move.value, move.target)
                for old in move.tombstone_partitions:
                    _produce(producer, topic, move.key, None, old)
            producer.commit_transaction(120)
        except Exception:
            producer.abort_transaction(30)
            raise
    return Growth(before, partitions, len(live), len(moves))


def _produce(producer: Producer, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, partition=partition)
            producer.poll(0)
            return
        except BufferError:  # local queue full: let deliveries drain, then retry
            producer.poll(0.5)
