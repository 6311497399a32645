"""Oversight: camera and pipeline health, platform lifecycle events, the access ledger (audit)."""

from typing import Any

from fastapi import APIRouter, Query, Request

from services.console.auth import allowed
from services.console.routes.context import Authed, Ctx
from services.console.views import health_view, platform_view

router = APIRouter(prefix="/api/v1")


@router.get("/health", tags=["health"])
def camera_health(user: Authed, ctx: Ctx) -> dict[str, Any]:
    """Connection state per camera, maintenance alerts, pipeline lag, service lifecycle events."""
    return health_view(ctx.state, user, ctx.settings.silent_after_s)


@router.get("/platform-events", tags=["health"])
def platform_events(user: Authed, ctx: Ctx) -> dict[str, Any]:
    with ctx.state.lock:
        return platform_view(ctx.state, limit=50)


@router.get("/audit", tags=["audit"])
def audit(
    user: Authed,
    ctx: Ctx,
    request: Request,
    limit: int = Query(200, ge=1, le=2000),
    actor: str | None = None,
    camera_id: str | None = None,
) -> dict[str, Any]:
    """Recent access-ledger entries, newest first (supervisors and admins)."""
    if not allowed(user.role, "audit"):
        raise ctx.deny(
            request,
            user,
            "audit read needs supervisor or admin",
            403,
            f"role {user.role!r} may not read the audit log",
        )
    with ctx.state.lock:
        rows = [
            r
            for r in reversed(ctx.state.audit)
            if (actor is None or r["actor"] == actor) and (camera_id is None or r["camera_id"] == camera_id)
        ]
    return {"records": rows[:limit], "count": len(rows)}
