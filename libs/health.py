"""Per-service HTTP endpoint: Prometheus /metrics, liveness /healthz and readiness /readyz."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from libs.settings import HttpSettings


class Health:
    """Liveness = the main loop beat recently; readiness = the service says it can do work."""

    def __init__(self, liveness_timeout_s: float) -> None:
        self.liveness_timeout_s = liveness_timeout_s
        self._last_beat = time.monotonic()
        self._ready = threading.Event()
        self._not_ready_reason = "starting"

    def beat(self) -> None:
        self._last_beat = time.monotonic()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        if ready:
            self._ready.set()
        else:
            self._not_ready_reason = reason or "not ready"
            self._ready.clear()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def live(self) -> tuple[bool, str]:
        age = time.monotonic() - self._last_beat
        if age > self.liveness_timeout_s:
            return False, f"main loop silent for {age:.0f} s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        return (True, "ok") if self.ready else (False, self._not_ready_reason)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds would flood logs
        pass


class HealthServer:
    """Serves the endpoints on a daemon thread; port 0 picks a free port (see .port)."""

    def __init__(self, settings: HttpSettings, health: Health) -> None:
        self.health = health
        metrics_app = make_wsgi_app()

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "/")
            if path in ("/healthz", "/readyz"):
                ok, reason = health.live() if path == "/healthz" else health.readiness()
                body = json.dumps({"ok": ok, "reason": reason}).encode()
                status = "200 OK" if ok else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json")])
                return [body]
            if path == "/metrics":
                return metrics_app(environ, start_response)
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"try /metrics, /healthz or /readyz\n"]

        self._server: WSGIServer = make_server(settings.host, settings.port, app, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
