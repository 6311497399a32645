"""The video wall: its tiles, the one frame-event stream, each camera's latest frame, latency reports."""

import asyncio
import contextlib
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from services.console.frame_events import frame_stream
from services.console.routes.context import Authed, Ctx, client
from services.console.views import wall_view

router = APIRouter(prefix="/api/v1")


class LatencyReport(BaseModel):
    samples_ms: list[float] = Field(max_length=100)


@router.get("/wall", tags=["wall"])
def wall(user: Authed, ctx: Ctx) -> dict[str, Any]:
    """Tiles of active cameras and cameras with open incidents, in the operator's order."""
    return wall_view(ctx.state, user, ctx.settings.wall_max_tiles, ctx.latency, ctx.settings.silent_after_s)


@router.post("/latency", tags=["wall"])
def report_latency(body: LatencyReport, user: Authed, ctx: Ctx) -> dict[str, Any]:
    """Browsers report capture→pixels samples; the footer shows the aggregate."""
    ctx.latency.add(body.samples_ms)
    return ctx.latency.summary()


@router.get(
    "/wall/frames",
    tags=["wall"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def wall_frames(user: Authed, ctx: Ctx, request: Request) -> StreamingResponse:
    """Server-sent events: `frame` {camera_id, sequence, capture_time_us} whenever the latest frame of
    a camera on the wall changes; the page then fetches it. One connection for the whole wall.
    Opening it is opening the live wall: audited (once per page, not per tile or frame)."""
    ctx.feeds.audit(user.name, "live_view", True, role=user.role, detail="wall", client=client(request))
    return StreamingResponse(
        frame_stream(ctx.frame_events, ctx.state, request, user.can_see),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/cameras/{camera_id}/frame.jpg", tags=["cameras"], responses={200: {"content": {"image/jpeg": {}}}})
async def frame(
    camera_id: str,
    user: Authed,
    ctx: Ctx,
    request: Request,
    after: int | None = Query(None, description="only a frame newer than this sequence"),
    wait_s: float = Query(0, ge=0, le=10, description="long-poll: wait this long for it"),
) -> Response:
    """The latest frame; X-Capture-Time-Us says when it was captured (for the latency footer).

    With `after` and `wait_s` the answer comes as soon as a newer frame arrives (204 if none in time),
    so tiles show frames the moment the console has them without polling fast."""
    ctx.need_camera(request, user, camera_id)
    state, frame_events = ctx.state, ctx.frame_events
    deadline = time.monotonic() + wait_s
    while True:
        woken = frame_events.register(camera_id)
        try:
            with state.lock:
                state.watch([camera_id])
                latest = state.frames.get(camera_id)
            if latest is not None and (after is None or latest.sequence != after):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if latest is None and after is None:
                    raise HTTPException(
                        404, f"no frame from camera {camera_id} yet (it sends frames while something moves)"
                    )
                return Response(status_code=204, headers={"Cache-Control": "no-store"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken, remaining)
        finally:
            frame_events.release(camera_id, woken)
    return Response(
        latest.jpeg,
        media_type="image/jpeg",
        headers={
            "Cache-Control": "no-store",
            "X-Capture-Time-Us": str(latest.capture_time_us),
            "X-Frame-Sequence": str(latest.sequence),
        },
    )
