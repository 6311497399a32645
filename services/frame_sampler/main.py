"""Frame-sampler service loop: decode only what is needed, pass on only scenes where something moves.

Consumes: cctv.video.packets.v1 (group cctv-frame-sampler), cctv.cameras.v1 (whole, for sampling policy).
Produces: cctv.frames.v1, cctv.camera-activity.v1, cctv.dlq.v1.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import TopicPartition
from prometheus_client import Counter, Gauge
from pydantic import Field

from libs.cameras import CameraEntry
from libs.inventory import InventoryFollower
from libs.kafka import ConsumeProduceLoop, Incoming, Outgoing, Rejected, make_consumer, make_producer
from libs.service import ServiceRuntime, start_service
from libs.settings import CommonSettings
from libs.topics import CAMERA_ACTIVITY, FRAMES, VIDEO_PACKETS
from services.frame_sampler.core import (
    CameraDecoder,
    EncodedPacket,
    FrameSamplerConfig,
    MotionConfig,
    SamplerOutput,
    SamplingConfig,
)

log = logging.getLogger(__name__)
SERVICE = "frame-sampler"

FRAMES_OUT = Counter("cctv_sampler_frames_total", "Frames published", ["camera_id", "reason"])
DECODE_ISSUES = Counter("cctv_sampler_decode_issues_total", "Bad input skipped to the next keyframe", ["camera_id", "kind"])
PACKETS_DECODED = Counter("cctv_sampler_packets_decoded_total", "Packets handed to a decoder", ["camera_id"])
PACKETS_SKIPPED = Counter("cctv_sampler_packets_skipped_total", "Packets never decoded (keyframe fast path)", ["camera_id"])
ACTIVE_CAMERAS = Gauge("cctv_sampler_active_cameras", "Cameras currently active (something moves)")

# Enough packets to find the source offset of a frame held back by the nearest-tick selector.
_OFFSET_MEMORY = 2048


class FrameSamplerSettings(CommonSettings):
    group_id: str = "cctv-frame-sampler"
    batch_size: int = Field(default=500, ge=1)
    # A worker thread encoding JPEGs while the loop decodes on; 0 encodes inline. At most one, so each
    # camera's encoder state (its swscale context) stays single-threaded.
    jpeg_threads: int = Field(default=1, ge=0, le=1)
    # Defaults for every camera; the inventory's sampling policy and heartbeat override per camera.
    sampler: FrameSamplerConfig = Field(default_factory=FrameSamplerConfig)


class FrameSampler:
    """Per-camera decoders keyed by camera id; reset on rebalance so decoding restarts at a keyframe."""

    def __init__(self, defaults: FrameSamplerConfig, inventory: InventoryFollower | None,
                 jpeg_threads: int = 1) -> None:
        self.defaults = defaults
        # One worker encodes JPEGs while the loop decodes the next packets (both release the GIL).
        self.jpeg_executor = ThreadPoolExecutor(jpeg_threads, thread_name_prefix="jpeg") if jpeg_threads else None
        self.inventory = inventory
        self.decoders: dict[str, tuple[CameraDecoder, FrameSamplerConfig, int]] = {}
        self.headers: dict[str, tuple[str, bytes | None]] = {}
        self.partition_of: dict[str, int] = {}
        self.offsets: dict[str, OrderedDict[tuple[str, int], tuple[int, int]]] = {}

    def config_for(self, camera_id: str) -> FrameSamplerConfig:
        entry: CameraEntry | None = self.inventory.get(camera_id) if self.inventory else None
        if entry is None:
            return self.defaults
        sampling = SamplingConfig(mode=entry.sampling.mode, fps=entry.sampling.fps)
        motion = MotionConfig(**(self.defaults.motion.model_dump() | {"heartbeat_interval_s": entry.sampling.heartbeat_s}))
        return self.defaults.model_copy(update={"sampling": sampling, "motion": motion})

    def decoder_for(self, camera_id: str) -> CameraDecoder:
        # The policy is rebuilt only when the inventory changed, not for every packet.
        version = self.inventory.version if self.inventory else 0
        current = self.decoders.get(camera_id)
        if current is not None and current[2] == version:
            return current[0]
        config = self.config_for(camera_id)
        if current is None or current[1] != config:
            if current is not None:
                log.info("sampling policy of %s changed: new decoder", camera_id, extra={"camera_id": camera_id})
            decoder = CameraDecoder(camera_id, config, self.jpeg_executor)
        else:
            decoder = current[0]
        self.decoders[camera_id] = (decoder, config, version)
        return decoder

    def forget_partitions(self, partitions: list[TopicPartition]) -> None:
        revoked = {p.partition for p in partitions}
        for camera_id in [c for c, p in self.partition_of.items() if p in revoked]:
            self.decoders.pop(camera_id, None)
            self.headers.pop(camera_id, None)
            self.offsets.pop(camera_id, None)
            self.partition_of.pop(camera_id, None)

    def handle(self, batch: list[Incoming]) -> tuple[list[Outgoing], list[Rejected]]:
        outputs: list[Outgoing] = []
        decoded: list[tuple[str, Incoming, OrderedDict[tuple[str, int], tuple[int, int]], SamplerOutput]] = []
        for record in batch:
            value = record.value
            camera_id = value["camera_id"]
            self.partition_of[camera_id] = record.partition
            if value["is_keyframe"] and value["codec"]:
                self.headers[camera_id] = (value["codec"], value["extradata"])
            codec, extradata = self.headers.get(camera_id, ("", None))
            memory = self.offsets.setdefault(camera_id, OrderedDict())
            memory[(value["session_id"], value["sequence"])] = (record.partition, record.offset)
            while len(memory) > _OFFSET_MEMORY:
                memory.popitem(last=False)
            decoder = self.decoder_for(camera_id)
            before = (decoder.counters.packets_decoded, decoder.counters.non_key_packets_skipped)
            result = decoder.process(EncodedPacket(
                camera_id=camera_id, codec=codec, extradata=extradata, time_base=(1, 1_000_000),
                pts_us=value["pts_us"], dts_us=value["dts_us"], is_keyframe=value["is_keyframe"], data=value["data"],
                sequence=value["sequence"], session_id=value["session_id"], capture_time_ms=value["capture_time"] // 1000,
            ))
            PACKETS_DECODED.labels(camera_id).inc(decoder.counters.packets_decoded - before[0])
            PACKETS_SKIPPED.labels(camera_id).inc(decoder.counters.non_key_packets_skipped - before[1])
            for issue in result.issues:
                DECODE_ISSUES.labels(camera_id, issue.kind).inc()
                log.warning("camera %s packet %d: %s: %s (resuming at the next keyframe)", camera_id, issue.sequence,
                            issue.kind, issue.message, extra={"camera_id": camera_id})
            decoded.append((camera_id, record, memory, result))
        # Second pass, after every packet of the batch went through its decoder: JPEGs encoded on the
        # executor meanwhile are collected in order (decode of later packets overlapped their encoding).
        for camera_id, record, memory, result in decoded:
            result.finish()
            now_us = time.time_ns() // 1000
            for frame in result.frames:
                partition, offset = memory.get((frame.session_id, frame.sequence), (record.partition, record.offset))
                outputs.append(Outgoing(FRAMES, camera_id, "Frame", {
                    "camera_id": camera_id, "session_id": frame.session_id, "sequence": frame.sequence,
                    "capture_time": frame.capture_time_ms * 1000, "pts_us": frame.pts_us,
                    "source_partition": partition, "source_offset": offset,
                    "width": frame.width, "height": frame.height, "jpeg": frame.jpeg,
                    "motion_score": frame.motion_score, "reason": frame.reason.upper(), "sampled_at": now_us,
                }))
                FRAMES_OUT.labels(camera_id, frame.reason).inc()
            for change in result.activity_changes:
                outputs.append(Outgoing(CAMERA_ACTIVITY, camera_id, "CameraActivity", {
                    "camera_id": camera_id, "state": change.state.upper(), "motion_score": change.score,
                    "since": change.since_ms * 1000, "timestamp": now_us,
                }))
                log.info("camera %s is %s (motion %.4f)", camera_id, change.state, change.score,
                         extra={"camera_id": camera_id})
        ACTIVE_CAMERAS.set(sum(1 for d, _c, _v in self.decoders.values() if d.activity_state.state == "active"))
        return outputs, []


def build_loop(runtime: ServiceRuntime[FrameSamplerSettings], inventory: InventoryFollower | None) -> ConsumeProduceLoop:
    settings = runtime.settings
    sampler = FrameSampler(settings.sampler, inventory, settings.jpeg_threads)
    return ConsumeProduceLoop(
        service=SERVICE, group_id=settings.group_id, topics=[VIDEO_PACKETS], schema_for=lambda _t: "VideoPacket",
        consumer=make_consumer(settings.kafka, settings.group_id, runtime.health),
        producer=make_producer(settings.kafka, SERVICE, runtime.health, **{"compression.type": "none"}),  # JPEG is compressed
        serde=runtime.serde, handler=sampler.handle, health=runtime.health, batch_size=settings.batch_size,
        on_assign=None, on_revoke=sampler.forget_partitions,
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
