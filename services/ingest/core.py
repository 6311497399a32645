"""Ingest core: keep cameras connected and turn their streams into packet records, without decoding.

Knows nothing of Kafka: sessions hand PacketRecords and StatusChanges to callbacks, and the thin loop in
main.py turns them into Avro records on Kafka. The pieces:

- session.py: one camera's connect → demux → reconnect cycle as a state machine (CameraSession);
- this module: CameraPuller, one thread stepping one session (live network sources, whose reads block);
- loops.py: DemuxLoop, one thread stepping many sessions (file sources, paced or not);
- model.py / errors.py: settings, records, backoff, GOP gate; failure reasons and credentials in URLs.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from libs.cameras import CameraEntry
from services.ingest.credentials import CredentialResolver
from services.ingest.errors import (
    CameraError,
    camera_credentials,
    describe_error,
    secrets_of,
    url_with_credentials,
)
from services.ingest.model import (
    CAMERA_CODECS,
    CameraState,
    GopGate,
    PacketRecord,
    PullSettings,
    StatusChange,
    backoff_delay,
)
from services.ingest.rate import ConnectRateLimiter
from services.ingest.session import CameraSession

__all__ = [
    "CAMERA_CODECS",
    "CameraError",
    "CameraPuller",
    "CameraSession",
    "CameraState",
    "GopGate",
    "PacketRecord",
    "PullSettings",
    "StatusChange",
    "backoff_delay",
    "camera_credentials",
    "describe_error",
    "secrets_of",
    "url_with_credentials",
]


class CameraPuller:
    """Keeps one camera connected on its own thread until stopped (see CameraSession for the cycle)."""

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
        self.session = CameraSession(
            entry,
            on_packet,
            on_status,
            settings,
            rng,
            credentials or CredentialResolver(environ=environ),
            connect_gate,
        )
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def packets(self) -> int:
        return self.session.packets

    @property
    def reconnects(self) -> int:
        return self.session.reconnects

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def start(self) -> CameraPuller:
        self._thread = threading.Thread(target=self.run, name=f"pull-{self.entry.camera_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, reason: str = "stopped") -> None:
        self.session.request_stop(reason)
        self.stop_event.set()

    def join(self, timeout_s: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout_s)
            return not self._thread.is_alive()
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """Step the session until it is done (a stop, or a non-looping file's end), sleeping in between."""
        session = self.session
        due = session.step(time.monotonic())
        while due is not None:
            wait = due - time.monotonic()
            if wait > 0:
                self.stop_event.wait(wait)
            due = session.step(time.monotonic())
