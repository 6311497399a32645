"""Frame-sampler service: decode only what is needed, pass on only scenes where something moves.

Consumes: cctv.video.packets.v1 (group cctv-frame-sampler), cctv.cameras.v1 (whole, for sampling policy).
Produces: cctv.frames.v1, cctv.camera-activity.v1, cctv.dlq.v1.

The pure core is `decoder.CameraDecoder` (built from `selector`, `gate`, `motion` and `jpeg`); `cameras`
keeps one `Camera` per camera; `PacketHandler` below turns records into decoder input and results into
records; the loop is libs.kafka's `ConsumeProduceLoop`.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import TopicPartition
from prometheus_client import Counter, Gauge
from pydantic import Field

from libs.cameras import Sampling
from libs.inventory import InventoryFollower
from libs.kafka import (
    ConsumeProduceLoop,
    Incoming,
    Outgoing,
    Rejected,
    make_consumer,
    make_producer,
)
from libs.records import CameraActivity, Frame, VideoPacket, ms_to_us
from libs.service import ServiceRuntime, start_service
from libs.settings import CommonSettings
from libs.topics import CAMERA_ACTIVITY, FRAMES, VIDEO_PACKETS
from services.frame_sampler.cameras import Camera, CameraMap
from services.frame_sampler.config import FrameSamplerConfig
from services.frame_sampler.outputs import SamplerOutput

log = logging.getLogger(__name__)
SERVICE = "frame-sampler"

FRAMES_OUT = Counter("cctv_sampler_frames_total", "Frames published", ["camera_id", "reason"])
DECODE_ISSUES = Counter(
    "cctv_sampler_decode_issues_total", "Bad input skipped to the next keyframe", ["camera_id", "kind"]
)
PACKETS_DECODED = Counter("cctv_sampler_packets_decoded_total", "Packets handed to a decoder", ["camera_id"])
PACKETS_SKIPPED = Counter(
    "cctv_sampler_packets_skipped_total", "Packets never decoded (keyframe fast path)", ["camera_id"]
)
ACTIVE_CAMERAS = Gauge("cctv_sampler_active_cameras", "Cameras currently active (something moves)")


class FrameSamplerSettings(CommonSettings):
    group_id: str = "cctv-frame-sampler"
    batch_size: int = Field(default=500, ge=1)
    # A worker thread encoding JPEGs while the loop decodes on; 0 encodes inline. At most one, so each
    # camera's encoder state (its swscale context) stays single-threaded.
    jpeg_threads: int = Field(default=1, ge=0, le=1)
    # Defaults for every camera; the inventory's sampling policy overrides per camera.
    sampler: FrameSamplerConfig = Field(default_factory=FrameSamplerConfig)


class PacketHandler:
    """The loop's handler: a batch of VideoPacket records through their cameras' decoders, out as Frame
    and CameraActivity records."""

    def __init__(
        self, defaults: FrameSamplerConfig, inventory: InventoryFollower | None, jpeg_threads: int = 1
    ) -> None:
        # One worker encodes JPEGs while the loop decodes the next packets (both release the GIL).
        executor = ThreadPoolExecutor(jpeg_threads, thread_name_prefix="jpeg") if jpeg_threads else None

        def policy_of(camera_id: str) -> Sampling | None:
            entry = inventory.get(camera_id) if inventory is not None else None
            return entry.sampling if entry is not None else None

        self.cameras = CameraMap(defaults, policy_of, lambda: inventory.version if inventory else 0, executor)

    def forget_partitions(self, partitions: list[TopicPartition]) -> None:
        self.cameras.forget_partitions({p.partition for p in partitions})

    def handle(self, batch: list[Incoming]) -> tuple[list[Outgoing], list[Rejected]]:
        decoded: list[tuple[Camera, Incoming, SamplerOutput]] = []
        for record in batch:
            packet = VideoPacket.from_avro(record.value)
            camera = self.cameras.get(packet.camera_id)
            counters = camera.decoder.counters
            before = (counters.packets_decoded, counters.non_key_packets_skipped)
            result = camera.decoder.process(camera.packet(packet, record.partition, record.offset))
            PACKETS_DECODED.labels(camera.camera_id).inc(counters.packets_decoded - before[0])
            PACKETS_SKIPPED.labels(camera.camera_id).inc(counters.non_key_packets_skipped - before[1])
            for issue in result.issues:
                DECODE_ISSUES.labels(camera.camera_id, issue.kind).inc()
                log.warning(
                    "camera %s packet %d: %s: %s (resuming at the next keyframe)",
                    camera.camera_id,
                    issue.sequence,
                    issue.kind,
                    issue.message,
                    extra={"camera_id": camera.camera_id},
                )
            decoded.append((camera, record, result))
        # Second pass, after every packet of the batch went through its decoder: JPEGs encoded on the
        # executor meanwhile are collected in order (decode of later packets overlapped their encoding).
        outputs: list[Outgoing] = []
        for camera, record, result in decoded:
            result.finish()
            now_us = time.time_ns() // 1000
            for sampled in result.frames:
                partition, offset = camera.source_of(sampled) or (record.partition, record.offset)
                frame = Frame(
                    camera_id=camera.camera_id,
                    session_id=sampled.session_id,
                    sequence=sampled.sequence,
                    capture_time_us=ms_to_us(sampled.capture_time_ms),
                    pts_us=sampled.pts_us,
                    source_partition=partition,
                    source_offset=offset,
                    width=sampled.width,
                    height=sampled.height,
                    jpeg=sampled.jpeg,
                    motion_score=sampled.motion_score,
                    reason=sampled.reason,
                    sampled_at_us=now_us,
                )
                outputs.append(Outgoing(FRAMES, camera.camera_id, "Frame", frame.to_avro()))
                FRAMES_OUT.labels(camera.camera_id, sampled.reason).inc()
            for change in result.activity_changes:
                activity = CameraActivity(
                    camera.camera_id, change.state, change.score, ms_to_us(change.since_ms), now_us
                )
                outputs.append(Outgoing(CAMERA_ACTIVITY, camera.camera_id, "CameraActivity", activity.to_avro()))
                log.info(
                    "camera %s is %s (motion %.4f)",
                    camera.camera_id,
                    change.state,
                    change.score,
                    extra={"camera_id": camera.camera_id},
                )
        ACTIVE_CAMERAS.set(self.cameras.active_count())
        return outputs, []


def build_loop(
    runtime: ServiceRuntime[FrameSamplerSettings], inventory: InventoryFollower | None
) -> ConsumeProduceLoop:
    settings = runtime.settings
    handler = PacketHandler(settings.sampler, inventory, settings.jpeg_threads)
    return ConsumeProduceLoop(
        service=SERVICE,
        group_id=settings.group_id,
        topics=[VIDEO_PACKETS],
        schema_for=lambda _t: "VideoPacket",
        consumer=make_consumer(settings.kafka, settings.group_id, runtime.health),
        producer=make_producer(
            settings.kafka, SERVICE, runtime.health, **{"compression.type": "none"}
        ),  # JPEG is compressed
        serde=runtime.serde,
        handler=handler.handle,
        health=runtime.health,
        batch_size=settings.batch_size,
        on_assign=None,
        on_revoke=handler.forget_partitions,
    )


def main() -> None:
    runtime = start_service(SERVICE, FrameSamplerSettings)
    inventory = InventoryFollower(runtime.settings.kafka, runtime.serde).start()
    try:
        build_loop(runtime, inventory).run(lambda: runtime.shutdown.requested)
    finally:
        inventory.stop()
        runtime.close()


if __name__ == "__main__":
    main()
