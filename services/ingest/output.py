"""Ingest's outputs on Kafka: packets through each camera's GOP gate into a bounded producer queue, status
records, and the per-camera metrics. Called from the demux loops and camera threads at packet rate."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer
from prometheus_client import Counter

from libs.serde import AvroSerde
from libs.topics import CAMERA_STATUS, VIDEO_PACKETS
from services.ingest.model import GopGate, PacketRecord, StatusChange
from services.ingest.packet_avro import VideoPacketEncoder

log = logging.getLogger(__name__)

PACKETS = Counter("cctv_ingest_packets_total", "Video packets produced", ["camera_id"])
BYTES = Counter("cctv_ingest_bytes_total", "Video bytes produced", ["camera_id"])
DROPPED = Counter(
    "cctv_ingest_dropped_packets_total", "Packets dropped (whole GOPs) because Kafka could not keep up", ["camera_id"]
)
RECONNECTS = Counter("cctv_ingest_reconnects_total", "Connection attempts after a failure or a drop", ["camera_id"])


@dataclass(slots=True, eq=False)
class CameraOutput:
    """One camera's gate and counts. Counts are plain ints on the packet path, added to the labelled
    Prometheus counters about once a second (a counter update is ~1 µs of lock and lookup)."""

    key: bytes
    gate: GopGate
    counters: tuple[Any, Any, Any]  # PACKETS, BYTES, DROPPED children of this camera
    packets: int = 0
    bytes: int = 0
    dropped: int = 0
    published: tuple[int, int, int] = (0, 0, 0)

    def publish_metrics(self) -> None:
        now = (self.packets, self.bytes, self.dropped)
        for counter, value, before in zip(self.counters, now, self.published, strict=True):
            if value > before:
                counter.inc(value - before)
        self.published = now


class KafkaOutput:
    """Packets and status records of every camera of this replica onto one producer."""

    def __init__(self, producer: Producer, serde: AvroSerde, instance_id: str, max_buffered_messages: int) -> None:
        self.producer = producer
        self.serde = serde
        self.instance_id = instance_id
        self.encoder = VideoPacketEncoder(serde, VIDEO_PACKETS)
        self.cameras: dict[str, CameraOutput] = {}
        # Leave room for status records: packets stop (a whole GOP at a time) a little before the queue is full.
        self.room_limit = int(max_buffered_messages * 0.9)

    def open_camera(self, camera_id: str) -> None:
        """Ready for a camera's (new) stream: its counts go on, its gate starts afresh at a keyframe."""
        output = self.cameras.get(camera_id)
        if output is None:
            # Labelled metrics resolved once per camera, not per packet (label lookup is ~2 µs each).
            counters = (PACKETS.labels(camera_id), BYTES.labels(camera_id), DROPPED.labels(camera_id))
            self.cameras[camera_id] = CameraOutput(camera_id.encode(), GopGate(), counters)
        else:
            output.gate = GopGate()

    def on_packet(self, packet: PacketRecord) -> None:
        camera = self.cameras[packet.camera_id]
        if not camera.gate.admit(packet.is_keyframe, has_room=len(self.producer) < self.room_limit):
            camera.dropped += 1
            return
        try:
            self.producer.produce(VIDEO_PACKETS, self.encoder.encode(packet), camera.key)
        except BufferError:
            camera.gate.refused()
            camera.dropped += 1
            return
        camera.packets += 1
        camera.bytes += len(packet.data)

    def on_status(self, change: StatusChange) -> None:
        if change.state in ("RECONNECTING", "FAILED"):
            RECONNECTS.labels(change.camera_id).inc()
        record = {
            "camera_id": change.camera_id,
            "session_id": change.session_id,
            "state": change.state.value,
            "reason": change.reason,
            "fps": change.fps,
            "bitrate_bps": change.bitrate_bps,
            "last_packet_time": change.last_packet_time_ms,
            "reconnect_attempt": change.reconnect_attempt,
            "ingest_instance": self.instance_id,
            "timestamp": int(time.time() * 1000),
        }
        try:
            self.producer.produce(
                CAMERA_STATUS,
                key=change.camera_id.encode(),
                value=self.serde.serialize(CAMERA_STATUS, "CameraStatus", record),
            )
        except BufferError:
            log.warning("status of %s not published: producer queue full", change.camera_id)

    def publish_metrics(self) -> None:
        for camera in list(self.cameras.values()):
            camera.publish_metrics()
