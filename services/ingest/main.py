"""Ingest service loop: own cameras through Kafka's group protocol, pull them, produce packets and status.

Cameras: a few demux loops (services/ingest/loops.py) each serve many: they demux file sources
themselves and schedule network cameras, which connect and stream on a thread of their own while
connected (their reads block in FFmpeg). Packets and status go to services/ingest/output.py.

Assignment: replicas join one consumer group on the compacted inventory topic cctv.cameras.v1. Each
replica pulls the cameras on the partitions it owns; on (cooperative) rebalance it starts and stops
pullers, and it reacts to inventory changes live. Offsets are never committed: on assignment a
partition is re-read from the beginning, which rebuilds that partition's cameras from the compacted log.

Consumes: cctv.cameras.v1. Produces: cctv.video.packets.v1, cctv.camera-status.v1, cctv.dlq.v1.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)
from prometheus_client import Gauge
from pydantic import Field

from libs.cameras import CameraEntry
from libs.kafka import (
    BrokerProbe,
    CatchUp,
    DeadLetterPublisher,
    make_consumer,
    make_producer,
)
from libs.redact import redact_url
from libs.serde import SerdeError
from libs.service import ServiceRuntime, start_service
from libs.settings import CommonSettings
from libs.topics import CAMERAS
from services.ingest.core import (
    CameraSession,
    PullSettings,
)
from services.ingest.credentials import CredentialResolver
from services.ingest.loops import LoopedCamera, LoopPool
from services.ingest.output import KafkaOutput
from services.ingest.rate import ConnectRateLimiter

log = logging.getLogger(__name__)
SERVICE = "ingest"

CAMERAS_OWNED = Gauge("cctv_ingest_cameras_owned", "Cameras this replica is pulling")
CAMERAS_WAITING = Gauge(
    "cctv_ingest_cameras_waiting",
    "Cameras of this replica's partitions not pulled: over its camera limit or not started yet (scale out on this)",
)
CAMERA_LIMIT = Gauge("cctv_ingest_camera_limit", "Cameras one replica pulls at most (0 = no limit)")


class IngestSettings(CommonSettings):
    group_id: str = "cctv-ingest"
    pull: PullSettings = Field(default_factory=PullSettings)
    # Bound on what may wait for Kafka; beyond it whole GOPs are dropped instead of growing memory.
    max_buffered_mb: int = Field(default=256, ge=8)
    max_buffered_messages: int = Field(default=200_000, ge=1000)
    # Camera credentials: one file per credentials_ref (a mounted Kubernetes Secret), re-read when it
    # changes; CCTV_CAMERA_CREDENTIALS__<REF> variables are the fallback.
    credentials_dir: Path | None = None
    # A replica pulls at most this many cameras (what its CPU can serve); the rest of its partitions'
    # cameras wait, counted in cctv_ingest_cameras_waiting, for more replicas. 0 = no limit.
    max_cameras: int = Field(default=0, ge=0)
    # Cameras started per loop turn: the loop keeps answering the group protocol and SIGTERM while a
    # partition of thousands of cameras comes up.
    start_batch: int = Field(default=50, ge=1)
    # Threads that demux the file cameras and schedule all cameras (each serves many; a connected
    # network camera streams on its own thread, as its reads block). 0 = one per CPU, at most 4.
    demux_loops: int = Field(default=0, ge=0)


class Ingest:
    def __init__(self, runtime: ServiceRuntime[IngestSettings]) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.config = settings
        self.serde = runtime.serde
        # Video is already compressed: compressing again costs CPU for nothing.
        self.producer = make_producer(
            settings.kafka,
            SERVICE,
            runtime.health,
            **{
                "compression.type": "none",
                "queue.buffering.max.kbytes": self.config.max_buffered_mb * 1024,
                "queue.buffering.max.messages": self.config.max_buffered_messages,
            },
        )
        self.consumer: Consumer = make_consumer(
            settings.kafka,
            self.config.group_id,
            runtime.health,
            **{
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            },
        )
        self.dead_letters = DeadLetterPublisher(self.producer, self.serde, SERVICE, self.config.group_id)
        self.pullers: dict[str, LoopedCamera] = {}
        self.loops = LoopPool(self.config.demux_loops or min(4, os.cpu_count() or 1))
        self.output = KafkaOutput(self.producer, self.serde, settings.instance_id, self.config.max_buffered_messages)
        self.on_packet, self.on_status = self.output.on_packet, self.output.on_status
        self.credentials = CredentialResolver(self.config.credentials_dir)
        self.entries: dict[str, tuple[int, CameraEntry]] = {}  # camera → (partition, entry)
        self.metrics_due = 0.0
        # Partitions being re-read after assignment: the end to reach, and the latest raw record per
        # camera meanwhile (decoded once, at the partition's end: a city inventory holds superseded records).
        self.catching_up = CatchUp(self.consumer, CAMERAS)
        self.pending: dict[int, dict[str, Message]] = {}
        self.orphaned: set[int] = set()  # partitions whose assignment was lost, cameras still running
        # Owned and enabled but not pulled yet (started in batches, up to max_cameras), in arrival order.
        self.waiting: dict[str, tuple[int, CameraEntry]] = {}
        self.connect_gate = ConnectRateLimiter(self.config.pull.max_connects_per_s, self.config.pull.connect_burst)
        CAMERA_LIMIT.set(self.config.max_cameras)
        self.lock = threading.Lock()

    # ---- camera ownership -----------------------------------------------------------------------------------

    def start_camera(self, partition: int, entry: CameraEntry) -> None:
        with self.lock:
            previous = self.entries.get(entry.camera_id)
            if previous and previous[1] == entry and entry.camera_id in self.pullers:
                self.entries[entry.camera_id] = (partition, entry)
                return
            self._stop_camera_locked(entry.camera_id, "configuration changed")
            self.entries[entry.camera_id] = (partition, entry)
            if not entry.enabled:
                return
            camera_id = entry.camera_id
            self.output.open_camera(camera_id)
            log.info(
                "pulling camera %s from %s",
                entry.camera_id,
                redact_url(entry.stream_url),
                extra={"camera_id": entry.camera_id},
            )
            session = CameraSession(
                entry,
                self.on_packet,
                self.on_status,
                self.config.pull,
                credentials=self.credentials,
                connect_gate=self.connect_gate,
            )
            self.pullers[camera_id] = self.loops.attach(session)
            CAMERAS_OWNED.set(len(self.pullers))

    def stop_camera(self, camera_id: str, reason: str) -> None:
        with self.lock:
            self._stop_camera_locked(camera_id, reason)
            self.entries.pop(camera_id, None)
            self.waiting.pop(camera_id, None)
            CAMERAS_WAITING.set(len(self.waiting))

    def queue_camera(self, partition: int, entry: CameraEntry) -> None:
        """A camera to (re)start: a running one with unchanged settings is only re-recorded; others wait
        for start_waiting (a changed camera stops now: it must not keep pulling with old settings)."""
        with self.lock:
            previous = self.entries.get(entry.camera_id)
            if previous and previous[1] == entry and entry.camera_id in self.pullers:
                self.entries[entry.camera_id] = (partition, entry)
                return
            if entry.camera_id in self.pullers:
                self._stop_camera_locked(entry.camera_id, "configuration changed")
            self.entries[entry.camera_id] = (partition, entry)
            self.waiting.pop(entry.camera_id, None)
            if entry.enabled:
                self.waiting[entry.camera_id] = (partition, entry)
            CAMERAS_WAITING.set(len(self.waiting))

    def start_waiting(self) -> int:
        """Start up to start_batch waiting cameras, never beyond max_cameras; returns how many."""
        limit = self.config.max_cameras or None
        started = 0
        while self.waiting and started < self.config.start_batch and not self.runtime.shutdown.requested:
            if limit is not None and len(self.pullers) >= limit:
                break
            with self.lock:
                camera_id, (partition, entry) = next(iter(self.waiting.items()))
                del self.waiting[camera_id]
            self.start_camera(partition, entry)
            started += 1
        CAMERAS_WAITING.set(len(self.waiting))
        return started

    def _stop_camera_locked(self, camera_id: str, reason: str) -> None:
        puller = self.pullers.pop(camera_id, None)
        if puller is not None:
            puller.stop(reason)
            log.info("stopped camera %s: %s", camera_id, reason, extra={"camera_id": camera_id})
        CAMERAS_OWNED.set(len(self.pullers))

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Re-read owned partitions from the start: the compacted log is the whole inventory. Cameras
        # start only once a partition is read to its end, so a camera that was later changed or removed
        # is never briefly pulled with stale settings.
        self.catching_up.add(p.partition for p in partitions)
        for p in partitions:
            self.pending[p.partition] = {}
        consumer.incremental_assign([TopicPartition(p.topic, p.partition, OFFSET_BEGINNING) for p in partitions])
        if self.orphaned:
            self.stop_orphans({p.partition for p in partitions})
        self.runtime.health.set_ready(True)
        log.info("assigned inventory partitions %s", sorted(p.partition for p in partitions))

    def check_caught_up(self) -> None:
        for partition in self.catching_up.reached():
            for message in self.pending.pop(partition, {}).values():
                entry = self.decode(message)
                if entry is not None:
                    self.queue_camera(partition, entry)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {p.partition for p in partitions}
        self.catching_up.drop(revoked)
        for partition in revoked:
            self.pending.pop(partition, None)
        with self.lock:
            self.waiting = {c: queued for c, queued in self.waiting.items() if queued[0] not in revoked}
        for camera_id, (partition, _entry) in list(self.entries.items()):
            if partition in revoked:
                self.stop_camera(camera_id, "reassigned to another ingest replica")
        consumer.incremental_unassign(partitions)
        log.info("revoked inventory partitions %s", sorted(revoked))

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group session expired, typically because Kafka is unreachable. Keep pulling: the cameras
        stay connected and the bounded buffer drops whole GOPs until Kafka returns; the next assignment
        then decides which cameras this replica keeps (see on_assign)."""
        lost = {p.partition for p in partitions}
        self.catching_up.drop(lost)
        for partition in lost:
            self.pending.pop(partition, None)
        self.orphaned |= lost
        consumer.incremental_unassign(partitions)
        log.warning(
            "inventory assignment lost (Kafka unreachable?); keeping %d cameras running until the group is rejoined",
            len(self.pullers),
        )

    def stop_orphans(self, assigned: set[int]) -> None:
        """After a lost assignment: cameras whose partitions did not come back belong to another replica now."""
        gone = self.orphaned - assigned
        for camera_id, (partition, _entry) in list(self.entries.items()):
            if partition in gone:
                self.stop_camera(camera_id, "reassigned to another ingest replica")
        self.orphaned = set()

    def handle(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("inventory consumer error: %s", error.str())
            return
        camera_id = (message.key() or b"").decode(errors="replace")
        partition = message.partition()
        if partition in self.pending:
            # Still reading this partition's history: keep only the latest record per camera (a city
            # inventory holds superseded records until compaction); a superseded bad one is moot.
            self.pending[partition][camera_id] = message
            return
        entry = self.decode(message)
        if message.value() is None:
            self.stop_camera(camera_id, "removed from inventory")
        elif entry is not None and partition is not None:
            self.queue_camera(partition, entry)

    def decode(self, message: Message) -> CameraEntry | None:
        """The camera of an inventory record; None for a tombstone or a bad record (dead-lettered)."""
        if message.value() is None:
            return None
        try:
            return CameraEntry.from_record(self.serde.deserialize(CAMERAS, "CameraConfig", message.value()))
        except (SerdeError, ValueError) as error:
            self.dead_letters.publish(message, error)
            return None

    def run(self) -> None:
        self.consumer.subscribe([CAMERAS], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost)
        shutdown = self.runtime.shutdown
        probe = BrokerProbe(self.consumer, CAMERAS, self.runtime.health)
        try:
            while not shutdown.requested:
                self.runtime.health.beat()
                for message in self.consumer.consume(500, 0.2):  # batches: a city inventory is long
                    self.handle(message)
                self.check_caught_up()
                self.start_waiting()
                self.producer.poll(0)
                probe.check()
                if time.monotonic() >= self.metrics_due:
                    self.metrics_due = time.monotonic() + 1.0
                    self.output.publish_metrics()
        finally:
            self.close()

    def close(self) -> None:
        with self.lock:
            pullers = list(self.pullers.values())
            for puller in pullers:
                puller.stop("ingest shutting down")
        # One deadline for all: a camera stuck in a connect must not add its own wait to every other's.
        deadline = time.monotonic() + 15
        for puller in pullers:
            puller.join(max(0.0, deadline - time.monotonic()))
        stuck = sum(puller.alive for puller in pullers)
        if stuck:
            log.warning("%d camera threads still in a connect at shutdown; exiting without them", stuck)
        self.pullers.clear()
        self.output.publish_metrics()
        remaining = self.producer.flush(10)  # bounded: during an outage nothing more can be delivered
        if remaining:
            log.error("%d records undelivered at shutdown", remaining)
        self.consumer.close()


def main() -> None:
    runtime = start_service(SERVICE, IngestSettings)
    try:
        Ingest(runtime).run()
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
