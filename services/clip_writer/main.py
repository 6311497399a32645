"""Clip-writer service loop: for every incident on cctv.alerts.v1, an evidence clip in object storage.

Consumes: cctv.alerts.v1 (group cctv-clip-writer); reads cctv.video.packets.v1 by time (no group).
Produces: objects in S3 (each clip and, from a worker thread, its masked copy for release), cctv.audit.v1 (retention deletions), cctv.dlq.v1 (undecodable alerts).
Alert offsets are committed only once the incident's clip is stored; while storage is down, finished
incidents wait in a bounded queue (consumption pauses when it is full) and are written when it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import Counter, Gauge

from libs.evidence_audit import AuditLog
from libs.evidence_store import EvidenceStore, StorageUnavailable
from libs.kafka import DeadLetterPublisher, coordinates, key_partition, make_consumer, make_producer
from libs.serde import AvroSerde, SerdeError
from libs.service import ServiceRuntime, start_service
from libs.settings import KafkaSettings
from libs.topics import ALERTS, VIDEO_PACKETS
from services.clip_writer.core import ClipError, Incident, Packet
from services.clip_writer.evidence import EvidenceDesk
from services.clip_writer.jobs import ClipJob, OpenClips
from services.clip_writer.masked_copies import MaskedCopies
from services.clip_writer.settings import ClipWriterSettings
from services.clip_writer.writer import ClipBuilder

log = logging.getLogger(__name__)
SERVICE = "clip-writer"

CLIPS_WRITTEN = Counter("cctv_clip_writer_clips_total", "Evidence clips stored with their manifest")
CLIPS_FAILED = Counter("cctv_clip_writer_failures_total", "Clips that could not be cut", ["reason"])
STORAGE_ERRORS = Counter("cctv_clip_writer_storage_errors_total", "Object-store requests that failed")
OPEN_CLIPS = Gauge("cctv_clip_writer_open_clips", "Incidents whose clip is not stored yet")
QUEUED_CLIPS = Gauge("cctv_clip_writer_queued_clips", "Ended incidents waiting to be written (bounded)")
PAUSED = Gauge("cctv_clip_writer_paused", "1 while consumption is paused because the queue is full")


def packet_partition(camera_id: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner (consistent_random: CRC32 of the key) gives a camera."""
    return key_partition(camera_id.encode(), partitions)


class KafkaPacketSource:
    """Reads one camera's packets by capture time from its partition of cctv.video.packets.v1."""

    def __init__(
        self, kafka: KafkaSettings, serde: AvroSerde, topic: str = VIDEO_PACKETS, slack_s: float = 5.0
    ) -> None:
        self.topic, self.serde, self.slack_ms = topic, serde, int(slack_s * 1000)
        self.consumer = Consumer(
            kafka.client_config()
            | {
                "group.id": f"{SERVICE}-reader",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 * 1024 * 1024,
            }
        )
        self._partitions: int | None = None

    def partition_of(self, camera_id: str) -> int:
        if self._partitions is None:
            metadata = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            if metadata.error is not None or not metadata.partitions:
                raise ClipError(f"topic {self.topic} is not available: {metadata.error}")
            self._partitions = len(metadata.partitions)
        return packet_partition(camera_id, self._partitions)

    def read(self, camera_id: str, start_us: int, end_us: int) -> list[Packet]:
        partition = self.partition_of(camera_id)
        # Record timestamps are produce times, a little after capture: start early, stop a little late.
        found = self.consumer.offsets_for_times(
            [TopicPartition(self.topic, partition, start_us // 1000 - self.slack_ms)], timeout=10
        )[0]
        low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)
        start = found.offset if found.offset >= 0 else high
        packets: list[Packet] = []
        if start >= high:
            return packets
        self.consumer.assign([TopicPartition(self.topic, partition, max(start, low))])
        try:
            position, idle_until = start, time.monotonic() + 15
            while position < high:
                messages = self.consumer.consume(500, 1.0)
                if not messages and time.monotonic() > idle_until:
                    # Offsets without records (compaction, transaction markers): what was read is all there is.
                    log.warning(
                        "%s[%d]: nothing after offset %d of %d; clip cut from what was read",
                        self.topic,
                        partition,
                        position,
                        high,
                    )
                    break
                if messages:
                    idle_until = time.monotonic() + 15
                for message in messages:
                    if message.error():
                        continue
                    _, packet_partition, packet_offset = coordinates(message)
                    position = packet_offset + 1
                    if message.key() != camera_id.encode():
                        continue
                    try:
                        value = self.serde.deserialize(self.topic, "VideoPacket", message.value())
                    except SerdeError:
                        continue  # the frame-sampler dead-letters it; a clip simply lacks that packet
                    if value["capture_time"] > end_us + self.slack_ms * 1000:
                        return packets
                    packets.append(Packet.from_record(packet_partition, packet_offset, value))
        finally:
            self.consumer.unassign()
        return packets


class ClipWriterLoop:
    def __init__(self, runtime: ServiceRuntime[ClipWriterSettings]) -> None:
        settings = self.settings = runtime.settings
        self.runtime = runtime
        self.consumer = make_consumer(settings.kafka, settings.group_id, runtime.health)
        producer = self.producer = make_producer(settings.kafka, SERVICE, runtime.health)
        self.dead_letters = DeadLetterPublisher(producer, runtime.serde, SERVICE, settings.group_id)
        self.store = EvidenceStore(settings.s3)
        self.builder = ClipBuilder(
            settings.clips,
            KafkaPacketSource(settings.kafka, runtime.serde),
            self.store,
            settings.evidence.private_key(),
            max_wait_s=settings.max_wait_s,
        )
        self.desk = EvidenceDesk(self.store, AuditLog(producer, runtime.serde))
        self.masked_copies = (
            MaskedCopies(settings.s3, settings.masked_copies, settings.evidence.private_key(), SERVICE).start()
            if settings.masked_copies.enabled
            else None
        )
        self.clips = OpenClips()
        self.paused = False
        self.storage_retry_at = 0.0
        self.next_sweep = time.monotonic() + 10.0
        self._committed: dict[int, int] = {}

    # --- Kafka side -------------------------------------------------------------------------------
    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit()
        self.clips.forget_partitions({p.partition for p in partitions})
        for p in partitions:
            self._committed.pop(p.partition, None)

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.runtime.health.set_ready(True)
        log.info("assigned %d alert partitions", len(partitions))
        if self.paused:
            self.consumer.pause(partitions)

    def _take(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error.str())
            return
        _, partition, offset = coordinates(message)
        try:
            alert = self.runtime.serde.deserialize(ALERTS, "Alert", message.value())
            incident = Incident.from_alert(alert)
        except (SerdeError, KeyError, ValueError) as bad:
            self.dead_letters.publish(message, bad)
            self.clips.seen(partition, offset)
            return
        self.clips.alert(partition, offset, alert["kind"], incident)

    def _commit(self) -> None:
        offsets = [
            TopicPartition(ALERTS, p, o) for p, o in self.clips.commit_offsets().items() if self._committed.get(p) != o
        ]
        if not offsets:
            return
        if self.producer.flush(30):  # dead letters of these offsets must be on the DLQ first
            log.warning("dead letters not yet acknowledged: commit postponed")
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self._committed.update({tp.partition: tp.offset for tp in offsets})
        except KafkaException as error:
            log.warning("offset commit failed (alerts may be re-read, clips are idempotent): %s", error)

    def _backpressure(self) -> None:
        full = self.clips.ended_count() >= self.settings.max_queued_clips
        assignment = self.consumer.assignment()
        if full and not self.paused:
            self.consumer.pause(assignment)
            log.warning("%d clips queued (storage down?): alert consumption paused", self.clips.ended_count())
        elif not full and self.paused:
            self.consumer.resume(assignment)
            log.info("clip queue has room again: alert consumption resumed")
        self.paused = full
        PAUSED.set(1 if full else 0)

    # --- clips --------------------------------------------------------------------------------------
    def _work(self) -> None:
        if time.monotonic() < self.storage_retry_at:
            return
        now_us = time.time_ns() // 1000
        policy = self.settings.clips
        for job in sorted(self.clips.jobs.values(), key=lambda j: j.incident.ended_at_us):
            if not job.due(policy, now_us):
                if not job.ended and now_us >= job.retry_at_us:
                    job.retry_at_us = now_us + int(policy.segment_s * 1_000_000)
                    if now_us - job.incident.started_at_us > policy.segment_s * 1_000_000:
                        self._guarded(job, partial(self.builder.store_closed_segments, job))
                continue
            self._guarded(job, partial(self._finish, job))
            if time.monotonic() < self.storage_retry_at:
                return  # storage is down: retry later, keep the queue

    def _finish(self, job: ClipJob) -> None:
        manifest = self.builder.finish(job)
        if manifest is None:
            job.retry_at_us = time.time_ns() // 1000 + 1_000_000
            return
        self.clips.finish(job.incident.alert_id)
        CLIPS_WRITTEN.inc()
        if self.masked_copies is not None:
            self.masked_copies.submit(job.incident.alert_id)
        log.info(
            "evidence clip of alert %s stored: %d object(s), %.1f s",
            job.incident.alert_id,
            len(manifest["objects"]),
            (manifest["clip"]["end_us"] - manifest["clip"]["start_us"]) / 1e6,
            extra={"camera_id": job.incident.camera_id},
        )

    def _guarded(self, job: ClipJob, action: Callable[[], object]) -> None:
        try:
            action()
            job.attempts = 0
        except StorageUnavailable as error:
            STORAGE_ERRORS.inc()
            job.attempts += 1
            delay = min(self.settings.retry_max_s, self.settings.retry_initial_s * 2 ** min(job.attempts - 1, 10))
            self.storage_retry_at = time.monotonic() + delay
            log.error(
                "object storage unavailable, %d clip(s) queued, retry in %.0f s: %s",
                self.clips.ended_count(),
                delay,
                error,
            )
        except ClipError as error:
            CLIPS_FAILED.labels("no_packets" if "no packets" in str(error) else "cut").inc()
            log.error(
                "alert %s: no clip: %s", job.incident.alert_id, error, extra={"camera_id": job.incident.camera_id}
            )
            if job.ended:
                self.clips.finish(job.incident.alert_id)

    def _sweep(self) -> None:
        if time.monotonic() < self.next_sweep:
            return
        self.next_sweep = time.monotonic() + self.settings.retention_sweep_s
        if self.masked_copies is not None:
            self.masked_copies.scan()  # clips whose copy was postponed (queue full, storage down, a restart)
        try:
            deleted = self.desk.sweep()
            if deleted:
                log.info("retention: %d expired clip(s) deleted", len(deleted))
        except StorageUnavailable as error:
            log.error("retention sweep skipped, storage unavailable: %s", error)
            self.next_sweep = time.monotonic() + 60

    def run(self) -> None:
        self.consumer.subscribe([ALERTS], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        try:
            while not self.runtime.shutdown.requested:
                # Never take more alerts than the queue has room for: the bound holds within a batch too.
                # (When it is full the partitions are paused: consume() then only keeps the group alive.)
                room = self.settings.max_queued_clips - self.clips.ended_count()
                for message in self.consumer.consume(max(1, min(100, room)), 0.5):
                    self._take(message)
                self.runtime.health.beat()
                self._work()
                self._backpressure()
                self._commit()
                self._sweep()
                OPEN_CLIPS.set(len(self.clips))
                QUEUED_CLIPS.set(self.clips.ended_count())
        finally:
            self._commit()
            self.consumer.close()
            if self.masked_copies is not None:
                self.masked_copies.stop()


def main() -> None:
    runtime = start_service(SERVICE, ClipWriterSettings)
    try:  # the key is read at start: a missing or malformed Secret stops the service with the reason
        runtime.settings.evidence.private_key()
    except ValueError as error:
        log.error("evidence signing key: %s", error)
        runtime.close()
        raise SystemExit(2) from None
    try:
        ClipWriterLoop(runtime).run()
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
