"""A real HTTP webhook receiver for tests: http.server on 127.0.0.1 in a thread, verifying signatures
with the example verifier agencies copy (services/dispatcher/verify.py)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.dispatcher.events import SIGNATURE_HEADER, TIMESTAMP_HEADER
from services.dispatcher.verify import verify


@dataclass
class Receiver:
    """Answers `fail_first` requests with 500, holds requests while `hold` is clear (a dead endpoint),
    401s bad signatures, then 200s; keeps every attempt and every accepted event in arrival order."""

    secret: bytes
    fail_first: int = 0
    status_after_hold: int = 500
    hold: threading.Event | None = None
    attempts: list[str] = field(default_factory=list)  # event ids of every request that reached it
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected_signatures: int = 0
    held_now: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def accepted_ids(self) -> list[str]:
        with self.lock:
            return [e["id"] for e in self.accepted]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not verify(
                    receiver.secret, self.headers.get(TIMESTAMP_HEADER), self.headers.get(SIGNATURE_HEADER), body
                ):
                    with receiver.lock:
                        receiver.rejected_signatures += 1
                    self._answer(401)
                    return
                event = json.loads(body)
                with receiver.lock:
                    receiver.attempts.append(event["id"])
                    failing = len(receiver.attempts) <= receiver.fail_first
                if receiver.hold is not None and not receiver.hold.is_set():
                    with receiver.lock:
                        receiver.held_now += 1
                    receiver.hold.wait(120)
                    self._answer(receiver.status_after_hold)
                    return
                if failing:
                    self._answer(500)
                    return
                with receiver.lock:
                    receiver.accepted.append(event | {"_headers": dict(self.headers), "_received_at": time.time()})
                self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
