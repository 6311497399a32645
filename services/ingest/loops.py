"""A few demux loops, each stepping many camera sessions from one thread.

One thread per camera woke 15 times a second per camera and queued them all on the GIL: at 200–300
cameras that convoy, not the demuxing, was most of ingest's CPU (docs/benchmarks/README.md). A loop
keeps its sessions in a heap by the time they next want to run and serves every session due within
a few milliseconds in one wake-up.

Only sources whose reads never block are demuxed on a loop (local files, paced or not): a live network
read can block for the whole read timeout, which would stall every other camera of its loop. A network
camera is scheduled by the loop (its backoff, its wait for a connect slot) but connects and streams on
a thread of its own, which ends when the connection does: a replica of thousands of unreachable cameras
holds threads only for the attempts under way, not one per camera. `runs_on_loop` decides.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time

from libs.cameras import CameraEntry
from services.ingest.session import CameraSession

log = logging.getLogger(__name__)

# Sessions due within this much of now are served in the same wake-up: pacing stays within a few
# milliseconds of real time while a loop of hundreds of 15 fps cameras wakes far less often than
# once per packet.
COALESCE_S = 0.004


def runs_on_loop(entry: CameraEntry) -> bool:
    """Sources a shared loop can serve: local files, whose demux reads return at once."""
    return entry.stream_url.startswith("file://")


class DemuxLoop:
    """One thread stepping many sessions, each when it is due."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._heap: list[tuple[float, int, int, CameraSession]] = []
        self._tokens: dict[int, int] = {}  # id(session) → token of its one live heap entry
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sessions: dict[int, CameraSession] = {}
        self._finished: dict[int, threading.Event] = {}
        self._away: dict[int, threading.Event] = {}  # sessions on their own thread → its wake-up
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: CameraSession) -> threading.Event:
        """Serve `session` from now on; the returned event is set once it has finished."""
        finished = threading.Event()
        with self._lock:
            self._sessions[id(session)] = session
            self._finished[id(session)] = finished
            self._push_locked(session, 0.0)
        self._wake.set()
        return finished

    def stop(self, session: CameraSession, reason: str) -> None:
        """Ask `session` to stop; the loop steps it at once (publishing its STOPPED status)."""
        with self._lock:
            session.request_stop(reason)
            away = self._away.get(id(session))
            if away is not None:
                away.set()  # its thread steps it next (a read under way ends by its timeout)
            elif id(session) in self._sessions:
                self._push_locked(session, 0.0)
        self._wake.set()

    def _push_locked(self, session: CameraSession, due: float) -> None:
        # A session has one live entry: pushing a new one retires the old (skipped when popped).
        token = next(self._order)
        self._tokens[id(session)] = token
        heapq.heappush(self._heap, (due, token, token, session))

    def _next_due(self, now: float) -> CameraSession | float | None:
        """A session due by `now`, else the time of the earliest one (None: nothing scheduled)."""
        with self._lock:
            heap = self._heap
            while heap:
                due, token, _, session = heap[0]
                if self._tokens.get(id(session)) != token:
                    heapq.heappop(heap)
                    continue
                if due > now:
                    return due
                heapq.heappop(heap)
                if id(session) in self._away:  # stepped by its own thread, which reschedules it
                    continue
                return session
            return None

    def _run(self) -> None:
        while True:
            now = time.monotonic() + COALESCE_S
            item = self._next_due(now)
            if isinstance(item, CameraSession):
                self._serve(item, now)
                continue
            timeout = None if item is None else item - now
            if timeout is None or timeout > 0:
                self._wake.wait(timeout)
                self._wake.clear()

    def _serve(self, session: CameraSession, now: float) -> None:
        if not runs_on_loop(session.entry) and session.stop_reason is None:
            wake = threading.Event()
            with self._lock:
                self._away[id(session)] = wake
            name = f"pull-{session.camera_id}"
            threading.Thread(target=self._serve_away, args=(session, wake), name=name, daemon=True).start()
            return
        self._settle(session, self._step(session, now))

    def _serve_away(self, session: CameraSession, wake: threading.Event) -> None:
        """A network camera's connection on its own thread; back to the loop once it waits for a retry."""
        due = self._step(session, time.monotonic())
        while due is not None:
            waiting = due - time.monotonic()
            if not session.connected and waiting > COALESCE_S and session.stop_reason is None:
                break  # a backoff or a connect slot ahead: the loop waits for it, not a thread
            if waiting > 0:
                wake.wait(waiting)
            due = self._step(session, time.monotonic())
        with self._lock:
            self._away.pop(id(session), None)
        self._settle(session, due)
        self._wake.set()

    @staticmethod
    def _step(session: CameraSession, now: float) -> float | None:
        try:
            return session.step(now)
        except Exception:  # noqa: BLE001 — step never raises; if it ever did, one camera must not end the loop
            log.exception("camera %s: session step failed; stopping it", session.camera_id)
            return None

    def _settle(self, session: CameraSession, due: float | None) -> None:
        """After a step: schedule the session again, or let go of it when it is done."""
        with self._lock:
            if due is None:
                key = id(session)
                self._sessions.pop(key, None)
                self._tokens.pop(key, None)
                self._finished.pop(key).set()
                return
            # A stop asked while it was being stepped must not wait for `due` (a backoff may be 30 s).
            self._push_locked(session, 0.0 if session.stop_reason is not None else due)


class LoopedCamera:
    """A camera served by a DemuxLoop, with the same handle as a CameraPuller (stop, join, alive)."""

    def __init__(self, session: CameraSession, loop: DemuxLoop) -> None:
        self.session = session
        self.loop = loop
        self._finished = loop.add(session)

    @property
    def packets(self) -> int:
        return self.session.packets

    @property
    def reconnects(self) -> int:
        return self.session.reconnects

    def stop(self, reason: str = "stopped") -> None:
        self.loop.stop(self.session, reason)

    def join(self, timeout_s: float | None = None) -> bool:
        return self._finished.wait(timeout_s)

    @property
    def alive(self) -> bool:
        return not self._finished.is_set()


class LoopPool:
    """A fixed set of demux loops; each new camera goes to the least loaded."""

    def __init__(self, loops: int) -> None:
        self.loops = [DemuxLoop(f"demux-{index}") for index in range(max(1, loops))]

    def attach(self, session: CameraSession) -> LoopedCamera:
        return LoopedCamera(session, min(self.loops, key=len))
