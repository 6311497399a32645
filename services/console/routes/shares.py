"""Live-video shares (supervisors and admins): one signed, revocable link per camera for an agency.

POST   /api/v1/shares           cameras by id or within radius_m of lat/lon, agency, purpose, lifetime
GET    /api/v1/shares           list, newest first (filters: status, agency, camera_id)
DELETE /api/v1/shares/{id}      revoke: the link stops at its next request on every gateway replica
GET    /api/v1/shares/agencies  where a share may go (the routing file's destinations)
Every creation and revocation is on the access ledger (cctv.audit.v1); opening and expiry are recorded by
the share gateway.
"""

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from libs.shares import ended, new_share, status_of
from services.console.auth import allowed
from services.console.routes.context import Authed, Ctx, client
from services.console.shares import ConsoleShares, ShareRequest, console_shares
from services.console.users import User
from services.console.wall import cameras_within

router = APIRouter(prefix="/api/v1/shares", tags=["shares"])


def supervisor_shares(request: Request, user: Authed, ctx: Ctx) -> ConsoleShares:
    """The shares book, for supervisors and admins only (others: 403, audited); 503 while shares are off."""
    if not allowed(user.role, "share"):
        raise ctx.deny(
            request, user, "live-video shares need supervisor or admin", 403, f"role {user.role!r} may not share video"
        )
    shares = console_shares(request.app.state, ctx.settings.shares, ctx.settings.kafka, ctx.feeds.serde)
    reason = shares.unavailable()
    if reason is not None:
        raise HTTPException(503, reason)
    shares.wait_caught_up()
    return shares


Shares = Annotated[ConsoleShares, Depends(supervisor_shares)]


def chosen_cameras(body: ShareRequest, user: User, ctx: Ctx, limit: int) -> list[str]:
    state = ctx.state
    with state.lock:
        visible = [c for c in state.cameras.values() if c.in_inventory and user.can_see(c.camera_id)]
        visible_ids = {c.camera_id for c in visible}
        ids = list(dict.fromkeys(body.camera_ids))
        unknown = [c for c in ids if c not in visible_ids]
        if unknown:
            raise HTTPException(404, f"no camera(s) {unknown} that you may see")
        if body.lat is not None and body.lon is not None and body.radius_m is not None:
            ids += [c.camera_id for c, _d in cameras_within(visible, body.lat, body.lon, body.radius_m)]
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise HTTPException(422, "no camera with a location lies within that radius")
    if len(ids) > limit:
        raise HTTPException(422, f"{len(ids)} cameras: at most {limit} per share request")
    return ids


@router.post("", status_code=201)
def create(body: ShareRequest, user: Authed, ctx: Ctx, shares: Shares, request: Request) -> dict[str, Any]:
    """One signed, revocable link per camera, for one agency and purpose, until the lifetime ends."""
    agencies = shares.agencies()
    if body.agency not in agencies:
        raise HTTPException(422, f"unknown agency {body.agency!r}; one of {sorted(agencies)} (routing file)")
    if body.unmasked and not agencies[body.agency]:
        raise ctx.deny(
            request,
            user,
            f"unmasked share for {body.agency}",
            403,
            f"{body.agency} may not receive unmasked video (its routing entry has no `unmasked: true`)",
        )
    settings = shares.settings
    lifetime = body.lifetime_s or settings.default_lifetime_s
    if lifetime > settings.max_lifetime_s:
        raise HTTPException(422, f"lifetime_s {lifetime} exceeds the maximum {settings.max_lifetime_s}")
    now_ms = int(time.time() * 1000)
    created = []
    for camera_id in chosen_cameras(body, user, ctx, settings.max_cameras):
        record = new_share(
            camera_id,
            body.agency,
            body.purpose,
            created_by=user.name,
            lifetime_s=lifetime,
            masked=not body.unmasked,
            alert_id=body.alert_id,
            now_ms=now_ms,
        )
        shares.publish(record)
        ctx.feeds.audit(
            user.name,
            "share.created" if record["masked"] else "share.created.unmasked",
            True,
            role=user.role,
            camera_id=camera_id,
            alert_id=body.alert_id,
            detail=f"share {record['share_id']} to {body.agency} for {lifetime} s; "
            f"masked={str(record['masked']).lower()}; purpose: {body.purpose}",
            client=client(request),
        )
        created.append(shares.view(record, now_ms))
    return {"shares": created, "count": len(created)}


@router.get("")
def list_shares(
    shares: Shares,
    status: Literal["live", "ended", "all"] = "live",
    agency: str | None = None,
    camera_id: str | None = None,
    limit: int = Query(200, ge=1, le=2000),
) -> dict[str, Any]:
    """Shares newest first; links only for live ones."""
    now_ms = int(time.time() * 1000)
    rows = [
        shares.view(r, now_ms)
        for r in sorted(shares.book.all(), key=lambda r: r["created_at"], reverse=True)
        if (agency is None or r["agency"] == agency)
        and (camera_id is None or r["camera_id"] == camera_id)
        and (status == "all" or (status_of(r, now_ms) == "live") == (status == "live"))
    ]
    return {"shares": rows[:limit], "count": len(rows)}


@router.get("/agencies")
def agencies(shares: Shares) -> dict[str, Any]:
    """Agencies a share can go to, whether each may receive unmasked video, and the lifetimes."""
    return {
        "agencies": [{"name": n, "unmasked_allowed": u} for n, u in shares.agencies().items()],
        "default_lifetime_s": shares.settings.default_lifetime_s,
        "max_lifetime_s": shares.settings.max_lifetime_s,
    }


@router.delete("/{share_id}")
def revoke(share_id: str, user: Authed, ctx: Ctx, shares: Shares, request: Request) -> dict[str, Any]:
    """Revoke: the link stops at its next request on every gateway replica (within about a second)."""
    record = shares.book.get(share_id)
    if record is None:
        raise HTTPException(404, f"no share {share_id!r}")
    now_ms = int(time.time() * 1000)
    if status_of(record, now_ms) != "live":
        raise HTTPException(409, f"share {share_id} already ended ({status_of(record, now_ms)})")
    revoked = ended(record, "REVOKED", user.name, now_ms)
    shares.publish(revoked)
    ctx.feeds.audit(
        user.name,
        "share.revoked",
        True,
        role=user.role,
        camera_id=record["camera_id"],
        alert_id=record.get("alert_id"),
        detail=f"share {share_id} to {record['agency']}",
        client=client(request),
    )
    return shares.view(revoked, now_ms)
