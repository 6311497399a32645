"""Camera directory: every visible camera (optionally within a radius), and one camera full-size."""

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from services.console.routes.context import Authed, Ctx, client
from services.console.wall import cameras_within

router = APIRouter(prefix="/api/v1", tags=["cameras"])


@router.get("/cameras")
def cameras(
    user: Authed,
    ctx: Ctx,
    lat: float | None = Query(None, ge=-90, le=90),
    lon: float | None = Query(None, ge=-180, le=180),
    radius_m: float | None = Query(None, gt=0, le=100_000),
) -> dict[str, Any]:
    """Every camera the user may see; with lat, lon and radius_m only those within the radius."""
    given = [v is not None for v in (lat, lon, radius_m)]
    if any(given) and not all(given):
        raise HTTPException(422, "a radius search needs all of lat, lon and radius_m")
    state = ctx.state
    with state.lock:
        visible = [c for c in state.cameras.values() if c.in_inventory and user.can_see(c.camera_id)]
        open_by_camera: dict[str, int] = {}
        for incident in state.book.select("open"):
            open_by_camera[incident.camera_id] = open_by_camera.get(incident.camera_id, 0) + 1
        if lat is not None and lon is not None and radius_m is not None:
            rows = [c.summary() | {"distance_m": round(d, 1)} for c, d in cameras_within(visible, lat, lon, radius_m)]
        else:
            rows = [c.summary() for c in sorted(visible, key=lambda c: c.camera_id)]
    for row in rows:
        row["open_incidents"] = open_by_camera.get(row["camera_id"], 0)
    return {"cameras": rows, "count": len(rows)}


@router.get("/cameras/{camera_id}")
def camera(camera_id: str, user: Authed, ctx: Ctx, request: Request) -> dict[str, Any]:
    """One camera full-size: its state and recent incidents. Opening it is a live view (audited)."""
    ctx.need_camera(request, user, camera_id)
    state = ctx.state
    with state.lock:
        state.watch([camera_id])
        summary = state.camera(camera_id).summary()
        recent = [i.summary() for i in state.book.select("all", camera_id=camera_id)[:20]]
    ctx.feeds.audit(user.name, "live_view", True, role=user.role, camera_id=camera_id, client=client(request))
    return summary | {"recent_incidents": recent}
