"""Ingest core: keep one camera connected and turn its stream into packet records, without decoding.

Knows nothing of Kafka: a CameraPuller hands PacketRecords and StatusChanges to callbacks. The thin
loop in main.py turns them into Avro records on Kafka.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import av
from pydantic import BaseModel, Field

from libs.cameras import CameraEntry
from libs.redact import redact_text
from services.ingest.credentials import (
    CredentialResolver,
    CredentialsNotFound,
    takes_credentials,
)
from services.ingest.rate import ConnectRateLimiter

log = logging.getLogger(__name__)


class PullSettings(BaseModel):
    open_timeout_s: float = Field(default=10.0, gt=0)
    # A stream silent for this long is considered stalled and is reconnected.
    read_timeout_s: float = Field(default=10.0, gt=0)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    backoff_jitter: float = Field(default=0.25, ge=0, le=1)
    # Periodic ONLINE status with fps and bitrate.
    status_interval_s: float = Field(default=10.0, gt=0)
    # Socket receive buffer for RTSP over UDP/TCP (FFmpeg's buffer_size), so bursts of a keyframe fit.
    rtsp_buffer_size: int = Field(default=1024 * 1024, gt=0)
    # Connection attempts per second for the whole replica (all its cameras), and how many may go at once
    # after a quiet spell; attempts beyond wait for a jittered slot. Bounds reconnect storms.
    max_connects_per_s: float = Field(default=100.0, gt=0)
    connect_burst: int = Field(default=100, ge=1)


class CameraState(StrEnum):
    CONNECTING = "CONNECTING"
    ONLINE = "ONLINE"
    RECONNECTING = "RECONNECTING"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


@dataclass(slots=True)
class PacketRecord:
    """One demuxed packet, shaped like the VideoPacket Avro record."""

    camera_id: str
    session_id: str
    sequence: int
    capture_time: int  # µs since epoch
    pts_us: int | None
    dts_us: int | None
    duration_us: int | None
    is_keyframe: bool
    codec: str | None
    extradata: bytes | None
    time_base_num: int | None
    time_base_den: int | None
    width: int | None
    height: int | None
    data: bytes

    def as_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class StatusChange:
    camera_id: str
    state: CameraState
    session_id: str | None = None
    reason: str | None = None
    fps: float | None = None
    bitrate_bps: float | None = None
    last_packet_time_ms: int | None = None
    reconnect_attempt: int = 0


def backoff_delay(attempt: int, initial_s: float, max_s: float, jitter: float, rng: random.Random) -> float:
    """Capped exponential backoff with +/- jitter, so a district's cameras do not reconnect in lockstep."""
    base = min(max_s, initial_s * (2 ** max(0, attempt - 1)))
    return max(0.0, base * (1 + rng.uniform(-jitter, jitter)))


class GopGate:
    """Admits packets while the output has room; once it has not, drops until the next keyframe, so a
    consumer never receives a group of pictures with holes (and memory never grows)."""

    def __init__(self) -> None:
        self.dropping = False
        self.dropped = 0

    def admit(self, is_keyframe: bool, has_room: bool) -> bool:
        if self.dropping and not is_keyframe:
            self.dropped += 1
            return False
        if not has_room:
            self.dropping = True
            self.dropped += 1
            return False
        self.dropping = False
        return True

    def refused(self) -> None:
        """The output refused an admitted packet after all: drop the rest of this GOP."""
        self.dropping = True
        self.dropped += 1


def camera_credentials(
    entry: CameraEntry, environ: dict[str, str] | None = None, resolver: CredentialResolver | None = None
) -> str | None:
    """'user:password' for the camera's credentials_ref (see services/ingest/credentials.py); None when it
    has none or its source takes none (a file:// camera never gets credentials in its URL)."""
    if not entry.credentials_ref or not takes_credentials(entry.stream_url):
        return None
    try:
        return (resolver or CredentialResolver(environ=environ)).resolve(entry.credentials_ref)
    except CredentialsNotFound as error:
        raise CameraError(str(error)) from None


def url_with_credentials(url: str, credentials: str | None) -> str:
    if not credentials or not takes_credentials(url):
        return url
    user, _, password = credentials.partition(":")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment))


def secrets_of(url: str, credentials: str | None) -> tuple[str, ...]:
    """Every form in which a password could appear in an error message."""
    values: list[str] = []
    password = urlsplit(url).password
    if password:
        values.append(password)
    if credentials:
        values.append(credentials.partition(":")[2])
    return tuple(v for secret in values if secret for v in (secret, quote(secret, safe="")))


class CameraError(Exception):
    """A camera problem described for operators (already free of credentials)."""


_UNAUTHORIZED = re.compile(r"\b401\b|unauthorized", re.IGNORECASE)
_FORBIDDEN = re.compile(r"\b403\b|forbidden", re.IGNORECASE)
# Only the status code: FFmpeg's "Demuxer/Option/Protocol not found" are not a missing stream.
_NOT_FOUND = re.compile(r"\b404\b")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _own_message(error: BaseException) -> str:
    """The error's own message, without the URL it names (a URL such as rtsp://h:40401/cam-0403 must
    never read as an HTTP status) and without FFmpeg's log excerpt, which libav keeps per process, not
    per thread, so under many concurrent cameras it may belong to another camera."""
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror)
    filename = getattr(error, "filename", None)
    text = str(error).replace(str(filename), "") if filename else str(error)
    return _URL.sub("<url>", text)


def describe_error(error: BaseException, secrets: tuple[str, ...], read_timeout_s: float) -> str:
    """A short, credential-free reason for a status record, classified by the error's type first and
    only then by its own message (never by the URL, never by another thread's FFmpeg log)."""
    if isinstance(error, CameraError):
        return str(error)
    name = type(error).__name__
    message = _own_message(error)
    if isinstance(error, av.error.ExitError) or "Immediate exit" in message:
        reason = f"no data for {read_timeout_s:g} s (timeout)"
    elif isinstance(error, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(error, TimeoutError):
        reason = "connection timed out"
    elif isinstance(error, av.error.HTTPUnauthorizedError) or _UNAUTHORIZED.search(message):
        reason = "authentication refused (401 Unauthorized)"
    elif isinstance(error, av.error.HTTPForbiddenError) or _FORBIDDEN.search(message):
        reason = "access forbidden (403)"
    elif isinstance(error, av.error.HTTPNotFoundError | FileNotFoundError) or _NOT_FOUND.search(message):
        reason = "stream not found (404 / no such file)"
    elif "connection refused" in message.lower():
        reason = "connection refused"
    elif "timed out" in message.lower():
        reason = "connection timed out"
    elif isinstance(error, av.error.InvalidDataError):
        reason = "invalid data in stream (not a supported video)"
    else:
        reason = f"{name}: {error!s}"
    return redact_text(reason, secrets)


@dataclass
class _Rates:
    """Packet and byte rates over the last status window."""

    packets: int = 0
    bytes: int = 0
    since: float = field(default_factory=time.monotonic)

    def add(self, size: int) -> None:
        self.packets += 1
        self.bytes += size

    def take(self) -> tuple[float, float]:
        elapsed = max(1e-6, time.monotonic() - self.since)
        fps, bps = self.packets / elapsed, self.bytes * 8 / elapsed
        self.packets, self.bytes, self.since = 0, 0, time.monotonic()
        return fps, bps


# Codecs IP cameras and video files of the pipeline use; the frame sampler decodes all of them.
CAMERA_CODECS = frozenset({"h264", "hevc", "mjpeg", "mpeg4", "mpeg2video", "vp8", "vp9", "av1"})
AVFMT_NOTIMESTAMPS = 0x0080  # libavformat flag: the container format carries no timestamps


def _micros(value: int | None, time_base: tuple[int, int]) -> int | None:
    """Stream ticks → µs in integer arithmetic (Fraction maths costs ~5 µs a packet; this ~0.3 µs)."""
    return None if value is None else value * time_base[0] * 1_000_000 // time_base[1]


class CameraPuller:
    """Keeps one camera connected until stopped: connect, demux, report, reconnect with backoff.

    Never raises: every failure becomes a StatusChange and a retry. Credentials are only in the URL
    handed to FFmpeg; everything reported is redacted.
    """

    def __init__(
        self,
        entry: CameraEntry,
        on_packet: Callable[[PacketRecord], None],
        on_status: Callable[[StatusChange], None],
        settings: PullSettings | None = None,
        environ: dict[str, str] | None = None,
        rng: random.Random | None = None,
        credentials: CredentialResolver | None = None,
        connect_gate: ConnectRateLimiter | None = None,
    ) -> None:
        self.entry = entry
        self.connect_gate = connect_gate
        self.on_packet = on_packet
        self.on_status = on_status
        self.settings = settings or PullSettings()
        self.environ = environ
        self.credentials = credentials or CredentialResolver(environ=environ)
        self.rng = rng or random.Random()
        self.stop_event = threading.Event()
        self.sequence = 0
        self.session_id = ""
        self.reconnects = 0
        self.packets = 0
        self.bytes = 0
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> CameraPuller:
        self._thread = threading.Thread(target=self.run, name=f"pull-{self.entry.camera_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, reason: str = "stopped") -> None:
        self._stop_reason = reason
        self.stop_event.set()

    def join(self, timeout_s: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout_s)
            return not self._thread.is_alive()
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the loop ---------------------------------------------------------------------------------------

    def run(self) -> None:
        camera_id = self.entry.camera_id
        attempt = 0
        was_online = False
        self._stop_reason = "stopped"
        while not self.stop_event.is_set():
            self.session_id = str(uuid.uuid4())
            self.sequence = 0
            state = CameraState.RECONNECTING if was_online else CameraState.CONNECTING
            self.on_status(StatusChange(camera_id, state, self.session_id, reconnect_attempt=attempt))
            credentials: str | None = None
            try:
                credentials = camera_credentials(self.entry, resolver=self.credentials)
                finished = self._pull_session(credentials)
                if finished:  # a file camera without loop reached its end
                    self.on_status(StatusChange(camera_id, CameraState.STOPPED, self.session_id, reason="end of file"))
                    return
                reason = "end of stream"
                attempt = 1 if self.packets_in_session else attempt + 1
            except Exception as error:  # noqa: BLE001 — every failure is a reconnect, never a crash
                reason = describe_error(
                    error, secrets_of(self.entry.stream_url, credentials), self.settings.read_timeout_s
                )
                attempt = 1 if self.packets_in_session else attempt + 1
            if self.stop_event.is_set():
                break
            was_online = was_online or self.packets_in_session > 0
            self.reconnects += 1
            delay = backoff_delay(
                attempt,
                self.settings.backoff_initial_s,
                self.settings.backoff_max_s,
                self.settings.backoff_jitter,
                self.rng,
            )
            state = CameraState.RECONNECTING if self.packets_in_session else CameraState.FAILED
            log.warning(
                "camera %s %s: %s; retry in %.1f s",
                camera_id,
                state.value.lower(),
                reason,
                delay,
                extra={"camera_id": camera_id},
            )
            self.on_status(
                StatusChange(
                    camera_id,
                    state,
                    self.session_id,
                    reason=f"{reason}; retry in {delay:.1f} s",
                    reconnect_attempt=attempt,
                )
            )
            self.stop_event.wait(delay)
        self.on_status(StatusChange(camera_id, CameraState.STOPPED, self.session_id, reason=self._stop_reason))

    def _open(self, url: str) -> Any:
        gated = self.connect_gate is not None and not url.startswith("file://")
        if gated and not self.connect_gate.wait(self.stop_event):  # type: ignore[union-attr]
            raise CameraError("stopping")
        options: dict[str, str] = {}
        if url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = self.entry.rtsp_transport
            options["timeout"] = str(int(self.settings.read_timeout_s * 1_000_000))
            options["buffer_size"] = str(self.settings.rtsp_buffer_size)
        elif url.startswith(("http://", "https://")):
            options["rw_timeout"] = str(int(self.settings.read_timeout_s * 1_000_000))
            options["reconnect"] = "0"
        path = url.removeprefix("file://")
        return av.open(path, options=options, timeout=(self.settings.open_timeout_s, self.settings.read_timeout_s))

    def _pull_session(self, credentials: str | None) -> bool:
        """One connection. Returns True when a non-looping file ended (nothing more to pull)."""
        self.packets_in_session = 0
        url = url_with_credentials(self.entry.stream_url, credentials)
        is_file = url.startswith("file://")
        rates = _Rates()
        next_status = time.monotonic() + self.settings.status_interval_s
        pts_offset_us = 0  # looped files: keep timestamps increasing across loops
        paced_start: float | None = None
        paced_origin_us = 0
        session_clock = time.monotonic()
        while not self.stop_event.is_set():
            container = self._open(url)
            try:
                video = next((s for s in container.streams if s.type == "video"), None)
                if video is None:
                    raise CameraError("no video stream in source")
                if video.codec_context.name not in CAMERA_CODECS:
                    # FFmpeg probes anything: random bytes read as "bin" art or raw audio are not a camera.
                    raise CameraError(
                        f"not a camera video codec: {video.codec_context.name} "
                        "(expected H.264, H.265, MJPEG, MPEG-4, VP8/9 or AV1)"
                    )
                # MJPEG over HTTP (and other raw live streams) carry no timestamps: the demuxer invents a
                # 25 fps clock, which makes fps sampling wrong. The arrival time is the only true clock.
                untimed = not is_file and bool(container.format.flags & AVFMT_NOTIMESTAMPS)
                context = video.codec_context
                stream_base = video.time_base or Fraction(1, 90_000)
                time_base = (stream_base.numerator, stream_base.denominator)
                header = {
                    "codec": context.name,
                    "extradata": bytes(context.extradata) if context.extradata else None,
                    "time_base_num": 1,
                    "time_base_den": 1_000_000,  # we carry µs timestamps
                    "width": context.width or None,
                    "height": context.height or None,
                }
                last_end_us = pts_offset_us
                for packet in container.demux(video):
                    if self.stop_event.is_set():
                        return False
                    if packet.size == 0:  # demuxer flush packet at end of input
                        continue
                    pts_us: int | None
                    dts_us: int | None
                    if untimed:
                        pts_us = dts_us = round((time.monotonic() - session_clock) * 1_000_000)
                        duration_us = None
                    else:
                        pts_us = _micros(packet.pts, time_base)
                        dts_us = _micros(packet.dts, time_base)
                        duration_us = _micros(packet.duration, time_base) if packet.duration else None
                    if pts_us is not None:
                        pts_us += pts_offset_us
                        last_end_us = max(last_end_us, pts_us + (duration_us or 0))
                    if dts_us is not None:
                        dts_us += pts_offset_us
                    if is_file and self.entry.realtime and pts_us is not None:
                        if paced_start is None:
                            paced_start, paced_origin_us = time.monotonic(), pts_us
                        wait = (pts_us - paced_origin_us) / 1e6 - (time.monotonic() - paced_start)
                        if wait > 0 and self.stop_event.wait(wait):
                            return False
                    data = bytes(packet)
                    key = bool(packet.is_keyframe)
                    record = PacketRecord(
                        camera_id=self.entry.camera_id,
                        session_id=self.session_id,
                        sequence=self.sequence,
                        capture_time=time.time_ns() // 1000,
                        pts_us=pts_us,
                        dts_us=dts_us,
                        duration_us=duration_us,
                        is_keyframe=key,
                        data=data,
                        **(header if key else dict.fromkeys(header)),
                    )
                    self.sequence += 1
                    self.packets_in_session += 1
                    self.packets += 1
                    self.bytes += len(data)
                    rates.add(len(data))
                    if self.packets_in_session == 1:
                        self.on_status(
                            StatusChange(
                                self.entry.camera_id,
                                CameraState.ONLINE,
                                self.session_id,
                                last_packet_time_ms=record.capture_time // 1000,
                            )
                        )
                    self.on_packet(record)
                    if time.monotonic() >= next_status:
                        fps, bps = rates.take()
                        next_status = time.monotonic() + self.settings.status_interval_s
                        self.on_status(
                            StatusChange(
                                self.entry.camera_id,
                                CameraState.ONLINE,
                                self.session_id,
                                fps=round(fps, 2),
                                bitrate_bps=round(bps),
                                last_packet_time_ms=record.capture_time // 1000,
                            )
                        )
            finally:
                container.close()
            if not (is_file and self.entry.loop):
                return is_file
            if self.packets_in_session == 0:
                raise CameraError("file has no video packets")
            pts_offset_us = last_end_us
        return False

    packets_in_session: int = 0
