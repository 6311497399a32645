"""Telling browsers about new frames the moment the console has them.

A wall of many tiles cannot hold one open request per tile: browsers allow only ~6 connections per
host over HTTP/1.1. So the page keeps ONE server-sent-events stream that names each camera whose latest
frame changed, and fetches that frame with a short request. Long-polling a single frame (for scripts)
uses the same notifications."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from fastapi import Request

from services.console.state import ConsoleState

KEEPALIVE_S = 15.0
QUEUE_LIMIT = 1000  # per stream; a stream this far behind drops notices (the next frame brings it back)


class FrameEvents:
    """Frame-changed notices from the Kafka reader thread, handed to the event loop's waiters."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiting: dict[str, set[asyncio.Future[None]]] = {}
        self.streams: set[asyncio.Queue[str]] = set()

    def notify_threadsafe(self, camera_id: str) -> None:
        if self.loop is not None and (self.streams or camera_id in self.waiting):
            self.loop.call_soon_threadsafe(self._wake, camera_id)

    def _wake(self, camera_id: str) -> None:
        for future in self.waiting.pop(camera_id, set()):
            if not future.done():
                future.set_result(None)
        for queue in self.streams:
            if queue.qsize() < QUEUE_LIMIT:
                queue.put_nowait(camera_id)

    def register(self, camera_id: str) -> asyncio.Future[None]:
        """Register before looking at the state, so a frame stored in between still wakes us."""
        self.loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = self.loop.create_future()
        self.waiting.setdefault(camera_id, set()).add(future)
        return future

    def release(self, camera_id: str, future: asyncio.Future[None]) -> None:
        waiters = self.waiting.get(camera_id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self.waiting[camera_id]

    def subscribe(self) -> asyncio.Queue[str]:
        self.loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.streams.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self.streams.discard(queue)


async def frame_stream(
    events: FrameEvents, state: ConsoleState, request: Request, can_see: Callable[[str], bool]
) -> AsyncIterator[str]:
    """`event: frame` with camera_id, sequence, capture_time_us and the camera's latest detections
    ({sequence, objects}) whenever a visible camera's latest frame or detections changed; a comment line
    every KEEPALIVE_S keeps proxies from closing the stream."""
    queue = events.subscribe()
    try:
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            try:
                camera_id = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if not can_see(camera_id):
                continue
            with state.lock:
                latest = state.frames.get(camera_id)
                detections = state.detections.get(camera_id)
            if latest is not None:
                notice = {
                    "camera_id": camera_id,
                    "sequence": latest.sequence,
                    "capture_time_us": latest.capture_time_us,
                    "detections": detections,
                }
                yield f"event: frame\ndata: {json.dumps(notice)}\n\n"
    finally:
        events.unsubscribe(queue)
