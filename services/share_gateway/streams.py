"""The live streams the gateway keeps: one HLS window per shared camera (and per masked/unmasked form),
fed from cctv.video.packets.v1. Only cameras with a live share are decoded and remuxed; a stream is
dropped as soon as its last share ends."""

from __future__ import annotations

import logging
import queue
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
    "Remuxing a segment (unmasked: per segment cut) or masking one packet (masked: decode, mask, encode)",
    ["masked"],
    buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2),
)
STREAMS = Gauge("cctv_share_gateway_streams", "Cameras being remuxed for live shares", ["masked"])
DROPPED = Counter("cctv_share_gateway_masking_dropped_total", "Packets dropped because masking fell behind")
SEGMENT_ERRORS = Counter("cctv_share_gateway_segment_errors_total", "Packets or segments that could not be remuxed")

StreamKey = tuple[str, bool]  # (camera_id, masked)


class Reencoder(Protocol):
    """Decodes, masks and re-encodes a packet stream (masked shares); packets in, packets out."""

    def push(self, packet: Packet) -> list[Packet]: ...


class MaskedWorker:
    """Masks one camera in its own thread, so a slow masked stream (or the models loading) never delays
    the packets of other cameras. When it falls behind by more than `max_backlog` packets it drops whole
    GOPs (up to the next keyframe): viewers see a jump, not an ever-growing delay."""

    def __init__(self, camera: str, stream: HlsStream, make_masker: Callable[[], Reencoder], max_backlog: int) -> None:
        self.camera, self.stream, self.make_masker, self.max_backlog = camera, stream, make_masker, max_backlog
        self._queue: queue.Queue[Packet | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"mask-{camera}", daemon=True)
        self._thread.start()

    def submit(self, packet: Packet) -> None:
        if self._queue.qsize() >= self.max_backlog:
            self._drop_to_keyframe()
        self._queue.put(packet)

    def _drop_to_keyframe(self) -> None:
        dropped = 0
        try:
            while True:
                head = self._queue.queue[0]
                if head is not None and head.is_keyframe and dropped:
                    break
                self._queue.get_nowait()
                dropped += 1
        except (IndexError, queue.Empty):
            pass
        DROPPED.inc(dropped)
        log.warning("camera %s: masking behind, %d packets dropped", self.camera, dropped)

    def stop(self) -> None:
        """Finish after the packet in hand: what is queued is no longer wanted."""
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(None)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            masker = self.make_masker()
        except Exception:
            log.exception("camera %s: masking could not start; the masked share stays without video", self.camera)
            return
        while (packet := self._queue.get()) is not None:
            started = time.perf_counter()
            try:
                cut = [segment for out in masker.push(packet) if (segment := self.stream.feed(out)) is not None]
            except (SegmentError, ValueError) as error:
                SEGMENT_ERRORS.inc()
                log.warning("camera %s: packet not masked: %s", self.camera, error)
                continue
            SEGMENT_SECONDS.labels("true").observe(time.perf_counter() - started)
            if cut:
                SEGMENTS.labels("true").inc(len(cut))


class LiveStreams:
    def __init__(
        self,
        segment_s: float,
        window: int,
        masker_factory: Callable[[], Reencoder] | None = None,
        max_masking_backlog: int = 100,
    ) -> None:
        self.segment_s, self.window = segment_s, window
        self.masker_factory = masker_factory
        self.max_masking_backlog = max_masking_backlog
        self._streams: dict[StreamKey, HlsStream] = {}
        self._maskers: dict[str, MaskedWorker] = {}
        self._stopped: list[MaskedWorker] = []  # finishing their packet in hand; joined at close
        self._lock = threading.Lock()

    def sync(self, live_shares: list[dict[str, Any]]) -> None:
        """Keep exactly the streams live shares need."""
        wanted = {(r["camera_id"], bool(r["masked"])) for r in live_shares}
        with self._lock:
            for key in wanted - self._streams.keys():
                stream = self._streams[key] = HlsStream(self.segment_s, self.window)
                if key[1]:
                    if self.masker_factory is None:
                        raise ValueError("masking is unavailable in this gateway")
                    self._maskers[key[0]] = MaskedWorker(key[0], stream, self.masker_factory, self.max_masking_backlog)
                log.info("camera %s: %s stream started", key[0], "masked" if key[1] else "unmasked")
            for key in self._streams.keys() - wanted:
                del self._streams[key]
                if key[1]:
                    worker = self._maskers.pop(key[0])
                    worker.stop()
                    self._stopped = [w for w in self._stopped if w.alive()] + [worker]
                log.info("camera %s: %s stream stopped (no live share)", key[0], "masked" if key[1] else "unmasked")
            cameras = {key[0] for key in self._streams}
        for masked in (False, True):
            STREAMS.labels(str(masked).lower()).set(sum(1 for key in wanted if key[1] == masked))
        self.cameras = frozenset(cameras)

    cameras: frozenset[str] = frozenset()

    def close(self) -> None:
        """Stop the masking threads and wait for them: a model run cut off at exit aborts the process."""
        with self._lock:
            workers = list(self._maskers.values()) + self._stopped
            self._maskers.clear()
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(15)

    def stream(self, camera_id: str, masked: bool) -> HlsStream | None:
        with self._lock:
            return self._streams.get((camera_id, masked))

    def feed(self, record: dict[str, Any]) -> None:
        """One VideoPacket record to every stream of its camera (masked ones through their worker)."""
        camera = record["camera_id"]
        packet = Packet.of(record)
        with self._lock:
            stream = self._streams.get((camera, False))
            masker = self._maskers.get(camera)
        if masker is not None:
            masker.submit(packet)
        if stream is None:
            return
        started = time.perf_counter()
        try:
            segment = stream.feed(packet)
        except SegmentError as error:
            SEGMENT_ERRORS.inc()
            log.warning("camera %s: packet %s not remuxed: %s", camera, record.get("sequence"), error)
            return
        if segment is not None:
            SEGMENT_SECONDS.labels("false").observe(time.perf_counter() - started)
            SEGMENTS.labels("false").inc()
