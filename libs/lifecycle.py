"""Graceful shutdown: SIGTERM/SIGINT set an event the service loops watch, so they flush, commit and close."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


class Shutdown:
    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> Shutdown:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set():
            return
        log.info("received %s: finishing the current batch, then flush, commit and close", signal.Signals(signum).name)
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def request(self) -> None:
        self.event.set()
