"""Dispatcher service loop: routed alerts → agencies' webhooks.

Consumes: cctv.alerts.<destination>.v1 for every destination with endpoints (group cctv-dispatcher).
Produces: HTTP POSTs (signed CloudEvents; snapshots masked unless the destination is `unmasked`),
cctv.audit.v1 (every snapshot released), cctv.dlq.v1 (undecodable alerts, events given up on).
An alert's offset is committed once every endpoint of its destination accepted it or it was
dead-lettered. A destination whose endpoints fall behind is paused on its own; others keep flowing.
"""

from __future__ import annotations

import base64
import logging
import queue
import time
from functools import partial
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Histogram
from pydantic import Field

from libs.audit import SCHEMA, audit_record
from libs.destinations import DestinationDelivery
from libs.kafka import (
    DeadLetterPublisher,
    SourceRecord,
    coordinates,
    make_consumer,
    make_producer,
)
from libs.masking import FaceDetector, PlateDetector, mask_jpeg
from libs.serde import SerdeError
from libs.service import ServiceRuntime, start_service
from libs.settings import CommonSettings
from libs.topics import AUDIT, destination_topic
from services.alert_router.routing import (
    DEFAULT_ROUTES_PATH,
    RoutingConfigError,
    RoutingTableLoader,
)
from services.dispatcher.core import OffsetTracker
from services.dispatcher.events import cloud_event
from services.dispatcher.worker import (
    DeliveryGaveUp,
    EndpointWorker,
    Job,
    RetryPolicy,
    SnapshotRelease,
)

log = logging.getLogger(__name__)
SERVICE = "dispatcher"
ROUTES_CHECK_S = 2.0  # how often the routing file is checked for changed endpoints
MASKING_SECONDS = Histogram(
    "cctv_dispatcher_masking_seconds",
    "Masking one snapshot (decode, detect, pixelate, encode)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)


FinishedQueue = queue.SimpleQueue[tuple[Job, DeliveryGaveUp | None, SnapshotRelease | None]]


def snapshot_for(
    job: Job, *, unmasked: bool, detector: FaceDetector | None, plates: PlateDetector | None = None
) -> tuple[dict | None, SnapshotRelease | None]:
    """The event's `snapshot`: masked (faces, heads of tracked people) unless the destination may have it
    unmasked. A snapshot that cannot be masked is not sent; the event still is, saying why."""
    assert job.snapshot is not None
    if unmasked:
        return (
            {"jpeg_base64": base64.b64encode(job.snapshot).decode(), "masked": False},
            SnapshotRelease(masked=False, faces=0),
        )
    if detector is None:
        return {"withheld": "masking unavailable"}, None
    try:
        result = mask_jpeg(job.snapshot, detector, list(job.people), plates=plates)
    except ValueError as error:
        log.warning("alert %s: snapshot withheld: %s", job.event["incident"], error)
        return {"withheld": "snapshot could not be masked"}, None
    MASKING_SECONDS.observe(result.seconds)
    return (
        {"jpeg_base64": base64.b64encode(result.jpeg).decode(), "masked": True},
        SnapshotRelease(masked=True, faces=len(result.faces), plates=len(result.plates)),
    )


class DispatcherSettings(CommonSettings):
    group_id: str = "cctv-dispatcher"
    routes_file: Path = DEFAULT_ROUTES_PATH
    # Events queued per endpoint before its destination's topic is paused (the bound on memory).
    max_queued_per_endpoint: int = Field(default=500, ge=1)
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    commit_interval_s: float = Field(default=2.0, gt=0)
    # 2 finds 6-9 px CCTV faces CenterFace misses at 1, at 4-5x the cost (docs/benchmarks/masking.md).
    masking_upscale: int = Field(default=1, ge=1, le=4)


def build_workers(
    endpoints: dict[str, DestinationDelivery],
    policy: RetryPolicy,
    finished: FinishedQueue,
    detector: FaceDetector | None,
    plates: PlateDetector | None = None,
) -> dict[str, list[EndpointWorker]]:
    """One worker per endpoint; raises ValueError naming a secret that cannot be read."""
    workers: dict[str, list[EndpointWorker]] = {}
    for destination, delivery in endpoints.items():
        snapshots = partial(snapshot_for, unmasked=delivery.unmasked, detector=detector, plates=plates)
        workers[destination] = [
            EndpointWorker(
                destination,
                endpoint,
                endpoint.secret.read(),
                policy,
                lambda job, outcome, release: finished.put((job, outcome, release)),
                snapshots,
            )
            for endpoint in delivery.webhooks
        ]
    return {d: w for d, w in workers.items() if w}


class DispatcherLoop:
    def __init__(self, runtime: ServiceRuntime[DispatcherSettings], routes: RoutingTableLoader) -> None:
        settings = self.settings = runtime.settings
        self.runtime, self.routes = runtime, routes
        table = self.table = routes.table
        self.finished: FinishedQueue = queue.SimpleQueue()
        masking_needed = any(not d.unmasked and d.webhooks for d in table.endpoints.values())
        detector = FaceDetector(upscale=settings.masking_upscale) if masking_needed else None
        plates = PlateDetector() if masking_needed else None
        self.workers = build_workers(
            table.endpoints,
            RetryPolicy(settings.retry_initial_s, settings.retry_max_s),
            self.finished,
            detector,
            plates,
        )
        self.topics = {destination_topic(d): d for d in self.workers}
        self.consumer = make_consumer(settings.kafka, settings.group_id, runtime.health)
        self.producer = make_producer(settings.kafka, SERVICE, runtime.health)
        self.dead_letters = DeadLetterPublisher(self.producer, runtime.serde, SERVICE, settings.group_id)
        self.tracker = OffsetTracker()
        self.paused: set[str] = set()
        self.next_commit = time.monotonic() + settings.commit_interval_s
        self.next_routes_check = time.monotonic() + ROUTES_CHECK_S

    def _endpoints_changed(self) -> bool:
        """True when the routing file now holds other endpoints whose secrets can all be read (an
        invalid file or a missing secret keeps the current endpoints, with the reason logged)."""
        if time.monotonic() < self.next_routes_check:
            return False
        self.next_routes_check = time.monotonic() + ROUTES_CHECK_S
        if not self.routes.reload_if_changed() or self.routes.table.endpoints == self.table.endpoints:
            return False
        try:
            for delivery in self.routes.table.endpoints.values():
                for endpoint in delivery.webhooks:
                    endpoint.secret.read()
        except ValueError as error:
            log.error("keeping the current endpoints: %s", error)
            self.routes.table = self.table
            return False
        log.info("endpoints changed in %s: restarting delivery with them", self.settings.routes_file)
        return True

    def _assigned(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        self.runtime.health.set_ready(True)
        log.info("assigned %d routed-alert partitions", len(partitions))
        paused = [p for p in partitions if p.topic in self.paused]
        if paused:
            self.consumer.pause(paused)

    def _revoked(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        self._commit()
        # Events still queued for these partitions are delivered anyway; the next owner may send them
        # again, which receivers deduplicate on the event id.
        self.tracker.forget({(p.topic, p.partition) for p in partitions})

    def _take(self, message: Message) -> None:
        consumer_error = message.error()
        if consumer_error is not None:
            if consumer_error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", consumer_error.str())
            return
        topic, partition, offset = coordinates(message)
        destination = self.topics[topic]
        try:
            alert = self.runtime.serde.deserialize(topic, "Alert", message.value())
            event = cloud_event(alert, destination)
        except (SerdeError, KeyError, ValueError) as error:
            self.dead_letters.publish(message, error)
            self.tracker.add(topic, partition, offset, 0)
            return
        workers = self.workers[destination]
        self.tracker.add(topic, partition, offset, len(workers))
        job = Job(
            event,
            SourceRecord.of(message),
            int(alert["produced_at"]),
            alert.get("snapshot_jpeg"),
            tuple(alert.get("objects") or ()),
        )
        for worker in workers:
            worker.submit(job)

    def _drain_finished(self) -> None:
        while True:
            try:
                job, gave_up, release = self.finished.get_nowait()
            except queue.Empty:
                return
            if gave_up is not None:
                self.dead_letters.publish(job.source, gave_up)
            if release is not None:
                self._record_release(job, release)
            self.tracker.done(job.source.topic, job.source.partition, job.source.offset)

    def _record_release(self, job: Job, release: SnapshotRelease) -> None:
        """The release ledger: every snapshot that left the centre, masked or not, on cctv.audit.v1."""
        data = job.event["data"]
        record = audit_record(
            job.event["destination"],
            "webhook.snapshot" if release.masked else "webhook.snapshot.unmasked",
            allowed=True,
            instance=self.settings.instance_id,
            role="agency",
            camera_id=data.get("camera_id"),
            alert_id=data.get("alert_id"),
            detail=f"event {job.event['id']}; masked={str(release.masked).lower()}; faces_masked={release.faces}; "
            f"text_regions_masked={release.plates}",
        )
        self.producer.produce(AUDIT, key=record["audit_id"], value=self.runtime.serde.serialize(AUDIT, SCHEMA, record))

    def _backpressure(self) -> None:
        """Pause a destination whose slowest endpoint has a full queue; resume it at half."""
        limit = self.settings.max_queued_per_endpoint
        assignment = self.consumer.assignment()
        for topic, destination in self.topics.items():
            backlog = max(w.backlog() for w in self.workers[destination])
            partitions = [p for p in assignment if p.topic == topic]
            if topic not in self.paused and backlog >= limit:
                self.paused.add(topic)
                self.consumer.pause(partitions)
                log.warning(
                    "%s: %d events queued for a slow endpoint; this destination is paused", destination, backlog
                )
            elif topic in self.paused and backlog <= limit // 2:
                self.paused.discard(topic)
                self.consumer.resume(partitions)
                log.info("%s: endpoint caught up; resumed", destination)

    def _commit(self) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.tracker.committable().items()]
        if not offsets:
            return
        if self.producer.flush(30):  # dead letters must be on the DLQ before their offsets are committed
            log.warning("dead letters not yet acknowledged: commit postponed")
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            log.warning("offset commit failed (events may be sent again; ids deduplicate): %s", error)

    def run(self) -> bool:
        """Delivers until shutdown (returns False) or until the endpoints change (returns True: the caller
        starts a new loop; undelivered events, not committed, are picked up again and ids deduplicate)."""
        reload = False
        for workers in self.workers.values():
            for worker in workers:
                worker.start()
        if not self.workers:
            log.warning("no destination in %s has webhooks: nothing to deliver", self.settings.routes_file)
            self.runtime.health.set_ready(True)
        else:
            self.consumer.subscribe(
                sorted(self.topics), on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
            )
        try:
            while not self.runtime.shutdown.requested:
                if self._endpoints_changed():
                    reload = True
                    break
                if self.topics:
                    for message in self.consumer.consume(100, 0.2):
                        self._take(message)
                else:
                    time.sleep(0.5)  # idle until stopped; the health endpoint still answers
                self.runtime.health.beat()
                self._drain_finished()
                self._backpressure()
                self.producer.poll(0)
                if time.monotonic() >= self.next_commit:
                    self.next_commit = time.monotonic() + self.settings.commit_interval_s
                    self._commit()
        finally:
            for workers in self.workers.values():
                for worker in workers:
                    worker.stop()
            self._drain_finished()
            self._commit()
            self.consumer.close()
            self.producer.flush(10)
        return reload


def main() -> None:
    runtime = start_service(SERVICE, DispatcherSettings)
    try:  # endpoints and their secrets are read at start: a wrong file or a missing Secret stops with the reason
        routes = RoutingTableLoader(runtime.settings.routes_file)
        loop = DispatcherLoop(runtime, routes)
    except (RoutingConfigError, ValueError) as error:
        log.error("dispatcher configuration: %s", error)
        runtime.close()
        raise SystemExit(2) from None
    try:
        while loop.run():
            loop = DispatcherLoop(runtime, routes)
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
