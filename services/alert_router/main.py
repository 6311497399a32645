"""Alert-router service: a faust-streaming app turning detections into routed, evidenced alerts.

Consumes: cctv.detections.v1 (keyed by camera id), cctv.cameras.v1 (whole: zones, rules, tags).
Produces: cctv.alerts.v1, cctv.alerts.<destination>.v1, cctv.dlq.v1; reads single frames of
cctv.frames.v1 by offset for evidence. Per-camera tracker, rule and incident state lives in a Faust
table backed by a changelog topic, so a restarted or rebalanced worker resumes open incidents.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import TopicPartition
from faust.serializers import codecs
from prometheus_client import Counter
from pydantic import Field, ValidationError

from libs.cameras import CameraEntry
from libs.evidence import evidence_reference
from libs.inventory import InventoryFollower
from libs.kafka import DeadLetterPublisher, SourceRecord, make_admin, make_producer, make_reader
from libs.records import Detections, Frame
from libs.serde import AvroSerde, SerdeError
from libs.service import ServiceRuntime, start_service
from libs.settings import CommonSettings, KafkaSettings
from libs.topics import ALERTS, DETECTIONS, destination_topic
from services.alert_router.config import CameraConfig, IncidentSettings, SeverityPolicy, TrackerSettings
from services.alert_router.model import AlertEvent, AlertKind, Det, FrameDetections, FrameRef
from services.alert_router.pipeline import CameraPipeline
from services.alert_router.routing import DEFAULT_ROUTES_PATH, RoutingTableLoader
from services.alert_router.snapshot import SnapshotError, render_snapshot

log = logging.getLogger(__name__)
SERVICE = "alert-router"

ALERTS_OUT = Counter("cctv_alerts_total", "Alerts produced", ["event_type", "kind", "severity"])
ROUTED = Counter("cctv_alerts_routed_total", "Routed alert copies", ["destination"])
SKIPPED = Counter("cctv_alert_router_skipped_total", "Detections not evaluated", ["reason"])
EVIDENCE_MISSING = Counter("cctv_alert_router_evidence_missing_total", "Alerts sent without a snapshot", ["reason"])


class AlertRouterSettings(CommonSettings):
    group_id: str = "cctv-alert-router"  # the Faust app id, which is its consumer group
    routes_file: Path = DEFAULT_ROUTES_PATH
    data_dir: Path = Path("/tmp/cctv-alert-router")
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    severity: SeverityPolicy = Field(default_factory=SeverityPolicy)
    snapshot_max_bytes: int = Field(default=200_000, ge=10_000)
    snapshot_max_dim: int = Field(default=960, ge=64)
    expire_interval_s: float = Field(default=2.0, gt=0)
    changelog_replication_factor: int = Field(default=1, ge=1)


class AvroCodec(codecs.Codec):
    """Faust codec for one topic's Avro records, through the project's serde (registry framing when
    a registry is configured, single-object encoding otherwise)."""

    def __init__(self, serde: AvroSerde, topic: str, schema: str) -> None:
        super().__init__(serde=serde, topic=topic, schema=schema)
        self.serde, self.topic, self.schema = serde, topic, schema

    def _dumps(self, obj: Any) -> bytes:
        return self.serde.serialize(self.topic, self.schema, obj)

    def _loads(self, s: bytes) -> Any:
        return self.serde.deserialize(self.topic, self.schema, s)


class FrameFetcher:
    """Fetches one frame by its Kafka coordinates (the frames topic is the claim check)."""

    def __init__(self, kafka: KafkaSettings, serde: AvroSerde, cache_size: int = 64) -> None:
        self.serde = serde
        self.consumer = make_reader(kafka, "alert-evidence", **{"fetch.wait.max.ms": 10})
        self.cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self.cache_size = cache_size

    def jpeg(self, ref: FrameRef, timeout_s: float = 5.0) -> bytes | None:
        key = (ref.topic, ref.partition, ref.offset)
        if key in self.cache:
            return self.cache[key]
        # A frame already deleted by retention is known from the partition's low watermark at once;
        # polling for it would stall the router (and every camera's alerts) for the whole timeout.
        low, high = self.consumer.get_watermark_offsets(TopicPartition(ref.topic, ref.partition), timeout=timeout_s)
        if not low <= ref.offset < high:
            return None
        self.consumer.assign([TopicPartition(ref.topic, ref.partition, ref.offset)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self.consumer.poll(0.2)
            if message is None or message.error():
                continue
            if message.offset() != ref.offset:
                return None  # the frame expired from the topic (retention): no evidence image
            jpeg = Frame.from_avro(self.serde.deserialize(ref.topic, "Frame", message.value())).jpeg
            self.cache[key] = jpeg
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
            return jpeg
        return None


def frame_detections(record: dict[str, Any]) -> FrameDetections:
    """Detections record → the core's input (invalid boxes raise ValueError)."""
    detections = Detections.from_avro(record)
    ref = detections.frame
    return FrameDetections(
        camera_id=detections.camera_id,
        frame_seq=detections.sequence,
        capture_time_ms=detections.capture_time_ms,
        frame_ref=FrameRef(ref.topic, ref.partition, ref.offset),
        width=detections.width,
        height=detections.height,
        detections=[Det.of(o) for o in detections.objects],
    )


def alert_record(
    event: AlertEvent, camera: CameraEntry, destinations: list[str], snapshot: bytes | None, sequence: int
) -> dict[str, Any]:
    """The core's AlertEvent → the Alert Avro record (times in µs)."""
    ref = event.frame_ref
    return {
        "alert_id": event.alert_id,
        "kind": event.kind.value.upper(),
        "sequence": sequence,
        "event_type": event.rule_type,
        "rule_id": event.rule,
        "severity": event.severity.value.upper(),
        "camera_id": event.camera_id,
        "camera_name": camera.name or camera.camera_id,
        "site_id": camera.site_id,
        "location": camera.location.model_dump() if camera.location else None,
        "tags": camera.tags,
        "zone_id": event.zone,
        "zone_name": event.zone,
        "started_at": event.started_at * 1000,
        "detected_at": event.detected_at * 1000,
        "ended_at": event.ended_at * 1000 if event.ended_at is not None else None,
        "track_ids": event.track_ids,
        "objects": [b.to_avro() for b in event.boxes],
        "frame": ref.to_avro() if ref else None,
        "snapshot_jpeg": snapshot,
        "description": event.description,
        "destinations": destinations,
        "produced_at": time.time_ns() // 1000,
        "evidence": evidence_reference(event.alert_id),
    }


class CameraDirectory:
    """Validated rule configuration per camera, rebuilt when the inventory changes; invalid cameras
    are rejected with the camera and zone named (and their detections skipped)."""

    def __init__(self, inventory: InventoryFollower) -> None:
        self.inventory = inventory
        self._version = -1
        self.rules: dict[str, CameraConfig] = {}
        self.rejected: dict[str, str] = {}

    def refresh(self) -> None:
        if self.inventory.version == self._version:
            return
        self._version = self.inventory.version
        rules, rejected = {}, {}
        for camera_id, entry in self.inventory.snapshot().items():
            try:
                rules[camera_id] = CameraConfig.from_entry(entry)
            except ValidationError as error:
                reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
                rejected[camera_id] = reason
                if self.rejected.get(camera_id) != reason:
                    log.error("camera %s rejected: %s", camera_id, reason, extra={"camera_id": camera_id})
        self.rules, self.rejected = rules, rejected


def build_app(runtime: ServiceRuntime[AlertRouterSettings], inventory: InventoryFollower) -> faust.App:
    settings = runtime.settings
    serde = runtime.serde
    kafka = settings.kafka
    partitions = len(make_admin(kafka).list_topics(DETECTIONS, timeout=10).topics[DETECTIONS].partitions)
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=_faust_credentials(kafka),
        store="memory://",  # state is rebuilt from the changelog topic on start and rebalance
        topic_partitions=partitions,
        topic_replication_factor=settings.changelog_replication_factor,
        processing_guarantee="at_least_once",
        web_enabled=False,
        datadir=str(settings.data_dir),
        table_standby_replicas=0,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
    )
    detections = app.topic(
        DETECTIONS, key_type=str, key_serializer="raw", value_serializer="raw", partitions=partitions
    )
    alert_codec = AvroCodec(serde, ALERTS, "Alert")
    alerts_topic = app.topic(ALERTS, key_serializer="raw", value_serializer=alert_codec)
    # Internal state, not a contract: JSON in the changelog (Faust's table serializer for plain types).
    state = app.Table("camera-state", default=None, partitions=partitions)
    directory = CameraDirectory(inventory)
    routes = RoutingTableLoader(settings.routes_file)
    fetcher = FrameFetcher(kafka, serde)
    dead_letters = DeadLetterPublisher(make_producer(kafka, f"{SERVICE}-dlq"), serde, SERVICE, settings.group_id)
    destination_topics: dict[str, faust.TopicT] = {}
    partition_of: dict[str, int] = {}
    # Live pipelines, valid while the table still holds the very state they wrote and the camera's
    # rules are unchanged: rebuilding from the stored state costs ~1 ms a frame, reusing ~0.2 ms.
    # After recovery or a rebalance the table holds new objects, so the pipeline is rebuilt from them.
    pipelines: dict[str, tuple[CameraPipeline, CameraConfig, dict[str, Any]]] = {}

    def pipeline_for(camera_id: str, rules: CameraConfig, stored: dict[str, Any] | None) -> CameraPipeline:
        cached = pipelines.get(camera_id)
        if cached is not None and stored is not None and cached[1] is rules and cached[2] is stored:
            return cached[0]
        return CameraPipeline(
            rules, settings.tracker, settings.incidents, settings.severity, stored["pipeline"] if stored else None
        )

    def store_outside_stream(camera_id: str, value: dict[str, Any]) -> None:
        """Faust only writes tables from stream events; a timer writes the changelog itself, to the
        partition the camera's detections (and so its table entry) live on."""
        partition = partition_of.get(camera_id, zlib.crc32(camera_id.encode()) % partitions)
        state.data[camera_id] = value
        state.changelog_topic.send_soon(
            key=camera_id,
            value=value,
            partition=partition,
            # Table has both serializers; Faust's TableT stub does not declare them.
            key_serializer=state.key_serializer,  # type: ignore[attr-defined]
            value_serializer=state.value_serializer,  # type: ignore[attr-defined]
        )

    def topic_for(destination: str) -> faust.TopicT:
        if destination not in destination_topics:
            name = destination_topic(destination)
            destination_topics[destination] = app.topic(
                name, key_serializer="raw", value_serializer=AvroCodec(serde, name, "Alert")
            )
        return destination_topics[destination]

    async def publish(events: list[AlertEvent], rules: CameraConfig, incident_state: dict[str, Any]) -> None:
        entry = inventory.get(rules.camera_id)
        if entry is None:
            return
        routes.reload_if_changed()
        for event in events:
            steps = incident_state.setdefault("alert_steps", {})
            sequence = steps.get(event.alert_id, -1) + 1
            steps[event.alert_id] = sequence
            if event.kind is AlertKind.END:
                steps.pop(event.alert_id, None)
            snapshot = await asyncio.get_running_loop().run_in_executor(None, _evidence, fetcher, event, settings)
            destinations = routes.table.route(event, rules)
            record = alert_record(event, entry, destinations, snapshot, sequence)
            key = event.alert_id.encode()
            await alerts_topic.send(key=key, value=record)
            for destination in destinations:
                await topic_for(destination).send(key=key, value=record)
                ROUTED.labels(destination).inc()
            ALERTS_OUT.labels(event.rule_type, event.kind.value, event.severity.value).inc()
            log.info(
                "alert %s %s %s zone %s camera %s -> %s",
                event.kind.value,
                event.rule_type,
                event.alert_id[:8],
                event.zone,
                event.camera_id,
                destinations or "-",
                extra={"camera_id": event.camera_id},
            )

    @app.agent(detections)
    async def evaluate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                record = serde.deserialize(DETECTIONS, "Detections", event.value)
                frame = frame_detections(record)
            except (SerdeError, ValueError, KeyError) as error:
                await asyncio.get_running_loop().run_in_executor(
                    None, dead_letters.publish, _source_record(message), error
                )
                continue
            partition_of[frame.camera_id] = message.partition
            directory.refresh()
            rules = directory.rules.get(frame.camera_id)
            if rules is None:
                SKIPPED.labels("rejected-camera" if frame.camera_id in directory.rejected else "unknown-camera").inc()
                continue
            stored = state.get(frame.camera_id)
            try:
                pipeline = pipeline_for(frame.camera_id, rules, stored)
                events = pipeline.process(frame)
            except ValueError as error:  # e.g. stored state of an unsupported version: start afresh
                log.error("camera %s: %s; starting its tracker and rules afresh", frame.camera_id, error)
                pipeline = CameraPipeline(rules, settings.tracker, settings.incidents, settings.severity, None)
                events = pipeline.process(frame)
            new_state = {"pipeline": pipeline.to_state(), "alert_steps": (stored or {}).get("alert_steps", {})}
            await publish(events, rules, new_state)
            state[frame.camera_id] = new_state
            pipelines[frame.camera_id] = (pipeline, rules, new_state)

    @app.timer(interval=settings.expire_interval_s)
    async def expire_silent_cameras() -> None:
        """End incidents of cameras that stopped sending frames (motion stopped, camera down)."""
        runtime.health.beat()
        directory.refresh()
        now_ms = int(time.time() * 1000)
        for camera_id, stored in list(state.items()):
            rules = directory.rules.get(camera_id)
            if not stored or rules is None:
                continue
            pipeline = pipeline_for(camera_id, rules, stored)
            events = pipeline.expire(now_ms)
            if events:
                new_state = {"pipeline": pipeline.to_state(), "alert_steps": stored.get("alert_steps", {})}
                await publish(events, rules, new_state)
                store_outside_stream(camera_id, new_state)
                pipelines[camera_id] = (pipeline, rules, new_state)

    @app.task
    async def report_ready() -> None:
        await app.tables.recovery.completed.wait()  # type: ignore[attr-defined]  # TableManager has it; the stub not
        runtime.health.set_ready(True)
        log.info("table recovery complete; evaluating detections")

    return app


def _evidence(fetcher: FrameFetcher, event: AlertEvent, settings: AlertRouterSettings) -> bytes | None:
    if event.frame_ref is None:
        return None
    jpeg = fetcher.jpeg(event.frame_ref)
    if jpeg is None:
        EVIDENCE_MISSING.labels("frame-expired").inc()
        return None
    label = f"{event.rule_type} {event.kind.value} - {event.zone}"
    try:
        return render_snapshot(jpeg, event.boxes, label, settings.snapshot_max_bytes, settings.snapshot_max_dim)
    except SnapshotError as error:
        EVIDENCE_MISSING.labels("render-failed").inc()
        log.warning("no snapshot for alert %s: %s", event.alert_id, error)
        return None


def _source_record(message: Any) -> SourceRecord:
    """A Faust message's original bytes and coordinates, for the dead-letter topic."""
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
        key=message.key,
        value=message.value,
        headers=dict(message.headers or []),
    )


def _faust_credentials(kafka: KafkaSettings) -> Any:
    if kafka.security_protocol == "PLAINTEXT":
        return None
    import ssl

    context = ssl.create_default_context(cafile=kafka.ssl_ca_location) if "SSL" in kafka.security_protocol else None
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def main() -> None:
    runtime = start_service(SERVICE, AlertRouterSettings, install_signals=False)  # Faust's worker owns signals
    inventory = InventoryFollower(runtime.settings.kafka, runtime.serde).start()
    inventory.caught_up.wait(60)
    app = build_app(runtime, inventory)
    worker = faust.Worker(app, loglevel=runtime.settings.log.level.lower(), override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        inventory.stop()
        runtime.close()


if __name__ == "__main__":
    main()
