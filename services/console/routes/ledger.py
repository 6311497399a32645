"""The release ledger for supervisors, auditors and the regulator: cctv.audit.v1 read from the start of
a period to its end (not the console's recent tail), filtered by agency or actor, camera, act and period,
as JSON or as a CSV download. The filtering core is libs/ledger.py, the same as `cctv audit list`."""

import io
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response

from libs.ledger import iso_ms, parse_moment, read_records, select, write_csv
from services.console.auth import allowed
from services.console.routes.context import Authed, Ctx, client

router = APIRouter(prefix="/api/v1", tags=["audit"])
MAX_ROWS = 50_000  # one export; a longer period is exported in parts


@router.get("/ledger", responses={200: {"content": {"text/csv": {}}}})
def ledger(
    user: Authed,
    ctx: Ctx,
    request: Request,
    agency: str | None = Query(None, max_length=200, description="actor: an agency (destination) or a user"),
    camera_id: str | None = Query(None, max_length=200),
    what: str | None = Query(None, max_length=100, description="act prefix: share, webhook, evidence, login"),
    since: str = Query("24h", max_length=40, description="ISO 8601 time (UTC) or a duration ago: 30m, 24h, 7d"),
    until: str | None = Query(None, max_length=40),
    format: Literal["json", "csv"] = "json",
    limit: int = Query(500, ge=1, le=MAX_ROWS, description="JSON rows (newest first); CSV has every row"),
) -> Any:
    """Ledger records of a period, oldest first in CSV, newest first in JSON. Exports are audited."""
    if not allowed(user.role, "audit"):
        raise ctx.deny(
            request, user, "ledger read needs supervisor or admin", 403, f"role {user.role!r} may not read the ledger"
        )
    try:
        since_ms = parse_moment(since)
        until_ms = parse_moment(until) if until else None
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    try:
        records, undecodable = read_records(ctx.settings.kafka, ctx.feeds.serde, since_ms, 20, "console-ledger")
    except (TimeoutError, ValueError) as error:
        raise HTTPException(503, f"the ledger could not be read: {error}") from None
    chosen = select(records, agency=agency, camera=camera_id, what=what, since_ms=since_ms, until_ms=until_ms)
    if len(chosen) > MAX_ROWS:
        raise HTTPException(422, f"{len(chosen)} records: narrow the period (at most {MAX_ROWS} per export)")
    if format == "json":
        return {"records": list(reversed(chosen))[:limit], "count": len(chosen), "undecodable": undecodable}
    ctx.feeds.audit(
        user.name,
        "ledger.export",
        True,
        role=user.role,
        camera_id=camera_id,
        detail=f"{len(chosen)} records; agency={agency or '*'} what={what or '*'} since={iso_ms(since_ms)}"
        + (f" until={iso_ms(until_ms)}" if until_ms else ""),
        client=client(request),
    )
    out = io.StringIO()
    write_csv(chosen, out)
    name = f"ledger-{iso_ms(since_ms)[:10]}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )
