"""Keeps the dev stack's services running: a service that exits is restarted with capped exponential
backoff; one that keeps dying is given up on. Every lifecycle event goes to a callback (the terminal
line and a PlatformEvent record on cctv.platform-events.v1, for the console header and `cctv status`).

`restart_decision` is the pure policy; `Supervisor` applies it to real processes on its own thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cctv.devstack.services import (
    ServiceProcess,
    ServiceSpec,
    StackContext,
    describe_exit,
)

log = logging.getLogger(__name__)


class RestartPolicy(BaseModel):
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    # More than `max_restarts` exits within `window_s` seconds: the service is given up on (GAVE_UP).
    max_restarts: int = Field(default=5, ge=0)
    window_s: float = Field(default=300.0, gt=0)


@dataclass(frozen=True)
class Decision:
    give_up: bool
    delay_s: float  # before the restart (0 when giving up)
    recent_exits: int


def restart_decision(policy: RestartPolicy, exit_times: list[float], now: float) -> Decision:
    """What to do after an exit at `now`, given earlier exit times (seconds, any monotonic clock).

    Backoff doubles with each exit inside the window, capped at backoff_max_s; a service that stays up
    longer than the window starts again from backoff_initial_s."""
    recent = [t for t in exit_times if now - t <= policy.window_s] + [now]
    if len(recent) > policy.max_restarts:
        return Decision(True, 0.0, len(recent))
    delay = min(policy.backoff_max_s, policy.backoff_initial_s * 2 ** (len(recent) - 1))
    return Decision(False, delay, len(recent))


@dataclass
class PlatformEvent:
    """Shaped like the PlatformEvent Avro record (schemas/platform_event.avsc)."""

    service: str
    event: str  # STARTED | EXITED | RESTARTING | GAVE_UP | STOPPED
    instance: str
    detail: str | None = None
    exit_code: int | None = None
    restarts: int = 0
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))

    def as_record(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "instance": self.instance,
            "event": self.event,
            "detail": self.detail,
            "exit_code": self.exit_code,
            "restarts": self.restarts,
            "timestamp": self.timestamp,
        }


@dataclass
class _Supervised:
    spec: ServiceSpec
    process: ServiceProcess
    started_at: float = 0.0
    exit_times: list[float] = field(default_factory=list)
    restarts: int = 0
    restart_at: float | None = None  # pending restart (monotonic)
    gave_up: bool = False


class Supervisor:
    """Starts the given services, restarts those that exit, and reports every event to `on_event`."""

    def __init__(
        self,
        specs: list[ServiceSpec] | tuple[ServiceSpec, ...],
        context: StackContext,
        logs: Path,
        on_event: Callable[[PlatformEvent], None],
        policy: RestartPolicy | None = None,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.context = context
        self.policy = policy or RestartPolicy()
        self.on_event = on_event
        self.poll_interval_s = poll_interval_s
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.services = [
            _Supervised(
                spec,
                ServiceProcess(spec.name, spec.environment(context), logs / f"{spec.name}.log", module=spec.module),
            )
            for spec in specs
        ]

    # ---- queries ------------------------------------------------------------------------------------------

    def state(self, name: str) -> str:
        """'up', 'restarting', 'GAVE UP' or 'DOWN' (for the live header)."""
        with self._lock:
            service = self._find(name)
            if service.gave_up:
                return "GAVE UP"
            if service.process.alive:
                return "up" if not service.restarts else f"up (restarts: {service.restarts})"
            return "restarting" if service.restart_at is not None else "DOWN"

    def process(self, name: str) -> ServiceProcess:
        return self._find(name).process

    @property
    def names(self) -> list[str]:
        return [s.spec.name for s in self.services]

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> Supervisor:
        for service in self.services:
            self._start(service)
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def halt(self) -> None:
        """Stop restarting (shutdown has begun); safe from a signal handler."""
        self._stop.set()

    def stop(self, timeout_s: float = 30.0) -> dict[str, int | None]:
        """Stop watching, then stop every service gracefully; returns each exit code."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        codes: dict[str, int | None] = {}
        with self._lock:
            for service in self.services:
                codes[service.spec.name] = code = service.process.stop(timeout_s)
                if code is not None and not service.gave_up:  # also when it already exited on Ctrl-C
                    self._emit(service, "STOPPED", describe_exit(code), code)
        return codes

    def check(self) -> None:
        """One supervision step: notice exits, schedule or perform restarts."""
        now = time.monotonic()
        with self._lock:
            for service in self.services:
                if self._stop.is_set():
                    return
                if service.gave_up:
                    continue
                if service.restart_at is not None:
                    if now >= service.restart_at:
                        service.restart_at = None
                        service.restarts += 1
                        self._start(service)
                    continue
                code = service.process.exit_code()
                if code is None or service.process.process is None:
                    continue
                self._handle_exit(service, code, now)

    # ---- internals ----------------------------------------------------------------------------------------

    def _find(self, name: str) -> _Supervised:
        return next(s for s in self.services if s.spec.name == name)

    def _start(self, service: _Supervised) -> None:
        service.process.start()
        service.started_at = time.monotonic()
        self._emit(
            service,
            "STARTED",
            f"pid {service.process.pid}" + (f", restart {service.restarts}" if service.restarts else ""),
        )

    def _handle_exit(self, service: _Supervised, code: int, now: float) -> None:
        up_for = now - service.started_at
        self._emit(
            service, "EXITED", f"{describe_exit(code)} after {up_for:.0f} s up; log {service.process.log_file}", code
        )
        decision = restart_decision(self.policy, service.exit_times, now)
        service.exit_times = [t for t in service.exit_times if now - t <= self.policy.window_s] + [now]
        if decision.give_up:
            service.gave_up = True
            self._emit(
                service,
                "GAVE_UP",
                f"exited {decision.recent_exits} times within {self.policy.window_s:.0f} s; "
                f"not restarting (see {service.process.log_file})",
                code,
            )
            return
        service.restart_at = now + decision.delay_s
        self._emit(service, "RESTARTING", f"restart {service.restarts + 1} in {decision.delay_s:.0f} s", code)

    def _emit(self, service: _Supervised, event: str, detail: str, code: int | None = None) -> None:
        pid = service.process.pid
        record = PlatformEvent(
            service.spec.name, event, f"{self.host}:{pid}" if pid else self.host, detail, code, service.restarts
        )
        try:
            self.on_event(record)
        except Exception:  # a failing reporter must not stop supervision
            log.exception("reporting %s %s failed", service.spec.name, event)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.check()
