"""The live streams the gateway keeps: one HLS window per shared camera (and per masked/unmasked form),
fed from cctv.video.packets.v1. Only cameras with a live share are decoded and remuxed; a stream is
dropped as soon as its last share ends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from services.share_gateway.hls import HlsStream, Packet, SegmentError

log = logging.getLogger(__name__)

SEGMENTS = Counter("cctv_share_gateway_segments_total", "HLS segments cut", ["masked"])
SEGMENT_SECONDS = Histogram(
    "cctv_share_gateway_segment_seconds",
    "Cutting one segment (remux; with masking also decode, mask and encode)",
    ["masked"],
    buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2),
)
STREAMS = Gauge("cctv_share_gateway_streams", "Cameras being remuxed for live shares", ["masked"])
SEGMENT_ERRORS = Counter("cctv_share_gateway_segment_errors_total", "Packets or segments that could not be remuxed")

StreamKey = tuple[str, bool]  # (camera_id, masked)


class Reencoder(Protocol):
    """Decodes, masks and re-encodes a packet stream (masked shares); packets in, packets out."""

    def push(self, packet: Packet) -> list[Packet]: ...


class LiveStreams:
    def __init__(self, segment_s: float, window: int, masker_factory: Callable[[], Reencoder] | None = None) -> None:
        self.segment_s, self.window = segment_s, window
        self.masker_factory = masker_factory
        self._streams: dict[StreamKey, HlsStream] = {}
        self._maskers: dict[StreamKey, Reencoder] = {}
        self._lock = threading.Lock()

    def sync(self, live_shares: list[dict[str, Any]]) -> None:
        """Keep exactly the streams live shares need."""
        wanted = {(r["camera_id"], bool(r["masked"])) for r in live_shares}
        with self._lock:
            for key in wanted - self._streams.keys():
                self._streams[key] = HlsStream(self.segment_s, self.window)
                log.info("camera %s: %s stream started", key[0], "masked" if key[1] else "unmasked")
            for key in self._streams.keys() - wanted:
                del self._streams[key]
                self._maskers.pop(key, None)
                log.info("camera %s: %s stream stopped (no live share)", key[0], "masked" if key[1] else "unmasked")
            cameras = {key[0] for key in self._streams}
        for masked in (False, True):
            STREAMS.labels(str(masked).lower()).set(sum(1 for key in wanted if key[1] == masked))
        self.cameras = frozenset(cameras)

    cameras: frozenset[str] = frozenset()

    def stream(self, camera_id: str, masked: bool) -> HlsStream | None:
        with self._lock:
            return self._streams.get((camera_id, masked))

    def feed(self, record: dict[str, Any]) -> None:
        """One VideoPacket record to every stream of its camera."""
        camera = record["camera_id"]
        packet = Packet.of(record)
        for masked in (False, True):
            with self._lock:
                stream = self._streams.get((camera, masked))
            if stream is None:
                continue
            started = time.perf_counter()
            try:
                outputs = [packet] if not masked else self._masker(camera).push(packet)
                cut = [segment for out in outputs if (segment := stream.feed(out)) is not None]
            except (SegmentError, ValueError) as error:
                SEGMENT_ERRORS.inc()
                log.warning("camera %s: packet %s not remuxed: %s", camera, record.get("sequence"), error)
                continue
            label = str(masked).lower()
            if cut or masked:
                SEGMENT_SECONDS.labels(label).observe(time.perf_counter() - started)
            if cut:
                SEGMENTS.labels(label).inc(len(cut))

    def _masker(self, camera: str) -> Reencoder:
        key = (camera, True)
        masker = self._maskers.get(key)
        if masker is None:
            if self.masker_factory is None:
                raise ValueError("masking is unavailable in this gateway")
            masker = self._maskers[key] = self.masker_factory()
        return masker
