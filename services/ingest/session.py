"""One camera's connect → demux → report → reconnect cycle, as a state machine advanced by `step()`.

Stepping instead of looping lets one thread drive one camera (CameraPuller, for live network sources
whose reads block in FFmpeg) or one DemuxLoop drive hundreds (paced file sources, whose reads never
block): `step()` does a bounded amount of work and says when it wants to run next.

Never raises: every failure becomes a StatusChange and a scheduled retry. Credentials are only in the
URL handed to FFmpeg; everything reported is redacted.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import av

from libs.cameras import CameraEntry
from services.ingest.credentials import CredentialResolver
from services.ingest.errors import CameraError, camera_credentials, describe_error, secrets_of, url_with_credentials
from services.ingest.model import (
    AVFMT_NOTIMESTAMPS,
    CAMERA_CODECS,
    CameraState,
    PacketRecord,
    PullSettings,
    StatusChange,
    backoff_delay,
)
from services.ingest.rate import ConnectRateLimiter

log = logging.getLogger(__name__)

# Packets one step may hand out when they are all due (an unpaced file, or a paced one catching up):
# enough to amortise the scheduling, few enough that one camera cannot hold a loop for long.
STEP_BURST = 32
_ENDED = object()  # the demuxer reached the end of its input


class CameraSession:
    """The state of one camera; `step(now)` advances it and returns when to step again (None = done)."""

    def __init__(
        self,
        entry: CameraEntry,
        on_packet: Callable[[PacketRecord], None],
        on_status: Callable[[StatusChange], None],
        settings: PullSettings | None = None,
        rng: random.Random | None = None,
        credentials: CredentialResolver | None = None,
        connect_gate: ConnectRateLimiter | None = None,
    ) -> None:
        self.entry = entry
        self.camera_id = entry.camera_id
        self.on_packet = on_packet
        self.on_status = on_status
        self.settings = settings or PullSettings()
        self.rng = rng or random.Random()
        self.credentials = credentials or CredentialResolver()
        self.connect_gate = connect_gate
        self.is_file = entry.stream_url.startswith("file://")
        self.paced = self.is_file and entry.realtime
        # What the owner may read at any time.
        self.session_id = ""
        self.sequence = 0
        self.packets = 0
        self.bytes = 0
        self.reconnects = 0
        self.packets_in_session = 0
        self.done = False
        self.stop_reason: str | None = None  # set (from any thread) to ask for a stop
        # Connection state.
        self._attempt = 0
        self._was_online = False
        self._announced = False  # CONNECTING/RECONNECTING published for the coming connection
        self._slot_reserved = False  # the connect-rate limiter's slot is ours
        self._credentials: str | None = None
        self._container: Any = None
        self._packets: Iterator[Any] | None = None
        self._held: Any = None  # a demuxed packet waiting for its paced time
        self._pts_offset_us = 0  # looped files: keep timestamps increasing across loops
        self._last_end_us = 0
        self._paced_start = 0.0
        self._paced_origin_us: int | None = None
        # Of the open stream (set by _open).
        self._untimed = False
        self._arrival_origin = 0.0
        self._tb_num, self._tb_den = 1, 1
        self._header: dict[str, Any] = {}
        self._no_header: dict[str, Any] = {}
        self._window = (0.0, 0, 0)  # since, packets, bytes: the status window's start
        self._next_status = 0.0

    @property
    def connected(self) -> bool:
        """A stream is open (its reads may block until the read timeout)."""
        return self._packets is not None

    def request_stop(self, reason: str = "stopped") -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    # ---- the state machine ----------------------------------------------------------------------------------

    def step(self, now: float) -> float | None:
        if self.done:
            return None
        if self.stop_reason is not None:
            return self._finish(CameraState.STOPPED, self.stop_reason)
        try:
            if self._packets is None:
                return self._connect(now)
            return self._stream(now)
        except Exception as error:  # noqa: BLE001 — every failure is a reconnect, never a crash
            if self.stop_reason is not None:
                return self._finish(CameraState.STOPPED, self.stop_reason)
            return self._retry(describe_error(error, self._secrets(), self.settings.read_timeout_s))

    def _connect(self, now: float) -> float | None:
        if not self._announced:
            self._announced = True
            self.session_id = str(uuid.uuid4())
            self.sequence = 0
            state = CameraState.RECONNECTING if self._was_online else CameraState.CONNECTING
            self.on_status(StatusChange(self.camera_id, state, self.session_id, reconnect_attempt=self._attempt))
            self._credentials = None
            self._credentials = camera_credentials(self.entry, resolver=self.credentials)
            self._pts_offset_us = self._last_end_us = 0
            self._paced_origin_us = None
            self.packets_in_session = 0
        if self.connect_gate is not None and not self.is_file and not self._slot_reserved:
            self._slot_reserved = True
            delay = self.connect_gate.reserve()
            if delay > 0:
                return now + delay
        self._slot_reserved = False
        self._open()
        return time.monotonic()

    def _open(self) -> None:
        url = url_with_credentials(self.entry.stream_url, self._credentials)
        options: dict[str, str] = {}
        if url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = self.entry.rtsp_transport
            options["timeout"] = str(int(self.settings.read_timeout_s * 1_000_000))
            options["buffer_size"] = str(self.settings.rtsp_buffer_size)
        elif url.startswith(("http://", "https://")):
            options["rw_timeout"] = str(int(self.settings.read_timeout_s * 1_000_000))
            options["reconnect"] = "0"
        timeout = (self.settings.open_timeout_s, self.settings.read_timeout_s)
        self._container = container = av.open(url.removeprefix("file://"), options=options, timeout=timeout)
        video = next((s for s in container.streams if s.type == "video"), None)
        if video is None:
            raise CameraError("no video stream in source")
        context: Any = video.codec_context
        if context.name not in CAMERA_CODECS:
            # FFmpeg probes anything: random bytes read as "bin" art or raw audio are not a camera.
            raise CameraError(
                f"not a camera video codec: {context.name} (expected H.264, H.265, MJPEG, MPEG-4, VP8/9 or AV1)"
            )
        # MJPEG over HTTP (and other raw live streams) carry no timestamps: the demuxer invents a 25 fps
        # clock, which makes fps sampling wrong. The arrival time is the only true clock.
        self._untimed = not self.is_file and bool(container.format.flags & AVFMT_NOTIMESTAMPS)
        self._arrival_origin = time.monotonic()
        base = video.time_base or Fraction(1, 90_000)
        self._tb_num, self._tb_den = base.numerator * 1_000_000, base.denominator
        self._header = {
            "codec": context.name,
            "extradata": bytes(context.extradata) if context.extradata else None,
            "time_base_num": 1,
            "time_base_den": 1_000_000,  # we carry µs timestamps
            "width": context.width or None,
            "height": context.height or None,
        }
        self._no_header = dict.fromkeys(self._header)
        self._window = (time.monotonic(), self.packets, self.bytes)
        self._next_status = time.monotonic() + self.settings.status_interval_s
        self._packets = container.demux(video)

    def _stream(self, now: float) -> float | None:
        """Hand out the packets that are due (at most STEP_BURST); return when the next one is."""
        packets = self._packets
        assert packets is not None
        tb_num, tb_den = self._tb_num, self._tb_den
        pts_us: int | None
        dts_us: int | None
        duration_us: int | None
        for _ in range(STEP_BURST):
            packet: Any = self._held
            self._held = None
            if packet is None:
                packet = next(packets, _ENDED)
                if packet is _ENDED:
                    return self._ended()
                if packet.size == 0:  # demuxer flush packet at end of input
                    continue
            if self._untimed:
                pts_us = dts_us = round((time.monotonic() - self._arrival_origin) * 1_000_000)
                duration_us = None
            else:
                pts_us = None if packet.pts is None else packet.pts * tb_num // tb_den + self._pts_offset_us
                dts_us = None if packet.dts is None else packet.dts * tb_num // tb_den + self._pts_offset_us
                duration_us = packet.duration * tb_num // tb_den if packet.duration else None
            if self.paced and pts_us is not None:
                if self._paced_origin_us is None:
                    self._paced_start, self._paced_origin_us = now, pts_us
                due = self._paced_start + (pts_us - self._paced_origin_us) / 1e6
                if due > now:
                    self._held = packet
                    return due
            if pts_us is not None:
                end_us = pts_us + (duration_us or 0)
                if end_us > self._last_end_us:
                    self._last_end_us = end_us
            self._emit(packet, pts_us, dts_us, duration_us)
        return now

    def _emit(self, packet: Any, pts_us: int | None, dts_us: int | None, duration_us: int | None) -> None:
        data = bytes(packet)
        key = packet.is_keyframe
        record = PacketRecord(
            self.camera_id,
            self.session_id,
            self.sequence,
            time.time_ns() // 1000,
            pts_us,
            dts_us,
            duration_us,
            key,
            data=data,
            **(self._header if key else self._no_header),
        )
        self.sequence += 1
        self.packets_in_session += 1
        self.packets += 1
        self.bytes += len(data)
        if self.packets_in_session == 1:
            self._status(CameraState.ONLINE, last_packet_time_ms=record.capture_time // 1000)
        self.on_packet(record)
        if time.monotonic() >= self._next_status:
            self._report_rates(record.capture_time // 1000)

    def _report_rates(self, last_packet_time_ms: int) -> None:
        now = time.monotonic()
        since, packets, bytes_ = self._window
        elapsed = max(1e-6, now - since)
        self._window = (now, self.packets, self.bytes)
        self._next_status = now + self.settings.status_interval_s
        self._status(
            CameraState.ONLINE,
            fps=round((self.packets - packets) / elapsed, 2),
            bitrate_bps=round((self.bytes - bytes_) * 8 / elapsed),
            last_packet_time_ms=last_packet_time_ms,
        )

    def _ended(self) -> float | None:
        """The demuxer reached the end of its input: loop a file, finish it, or reconnect a stream."""
        self._close()
        if self.is_file and self.entry.loop:
            if self.packets_in_session == 0:
                raise CameraError("file has no video packets")
            self._pts_offset_us = self._last_end_us
            self._open()  # same session: a looped file is one continuous stream
            return time.monotonic()
        if self.is_file:
            return self._finish(CameraState.STOPPED, "end of file")
        return self._retry("end of stream")

    def _retry(self, reason: str) -> float:
        self._close()
        self._announced = False
        self._attempt = 1 if self.packets_in_session else self._attempt + 1
        self._was_online = self._was_online or self.packets_in_session > 0
        self.reconnects += 1
        delay = backoff_delay(
            self._attempt,
            self.settings.backoff_initial_s,
            self.settings.backoff_max_s,
            self.settings.backoff_jitter,
            self.rng,
        )
        state = CameraState.RECONNECTING if self.packets_in_session else CameraState.FAILED
        log.warning(
            "camera %s %s: %s; retry in %.1f s",
            self.camera_id,
            state.value.lower(),
            reason,
            delay,
            extra={"camera_id": self.camera_id},
        )
        self._status(state, reason=f"{reason}; retry in {delay:.1f} s", reconnect_attempt=self._attempt)
        return time.monotonic() + delay

    def _finish(self, state: CameraState, reason: str) -> float | None:
        self._close()
        self.done = True
        self._status(state, reason=reason)
        return None

    def _status(self, state: CameraState, **fields: Any) -> None:
        self.on_status(StatusChange(self.camera_id, state, self.session_id, **fields))

    def _close(self) -> None:
        container, self._container, self._packets, self._held = self._container, None, None, None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 — closing a broken stream must not hide why it broke
                log.debug("closing %s failed", self.camera_id, exc_info=True)

    def _secrets(self) -> tuple[str, ...]:
        return secrets_of(self.entry.stream_url, self._credentials)
