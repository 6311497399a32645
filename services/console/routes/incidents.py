"""The incident workflow: list, detail, evidence snapshot, operator actions, false-alarm counts."""

import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from services.console.auth import allowed, permission_for_action
from services.console.incidents import Action, ActionRejected, Incident, validate_action
from services.console.routes.context import Authed, Console, Ctx, client
from services.console.users import User
from services.console.views import allowed_cameras

router = APIRouter(prefix="/api/v1", tags=["incidents"])


class ActionRequest(BaseModel):
    action: Literal["acknowledge", "assign", "comment", "false_alarm", "close", "reopen"]
    assignee: str | None = Field(default=None, max_length=200)
    comment: str | None = Field(default=None, max_length=2000)


def visible_incident(ctx: Console, alert_id: str, user: User, request: Request) -> Incident:
    """404 for an unknown (or expired) incident, 403 (audited) for one of a camera the user may not see."""
    with ctx.state.lock:
        incident = ctx.state.book.get(alert_id)
    if incident is None:
        raise HTTPException(
            404, f"no incident with alert_id {alert_id!r} (in the last {ctx.settings.incident_window_h:g} h)"
        )
    if not user.can_see(incident.camera_id):
        raise ctx.deny(
            request,
            user,
            "incident of a camera outside the user's restriction",
            403,
            f"you may not see incidents of camera {incident.camera_id}",
            camera_id=incident.camera_id,
            alert_id=alert_id,
        )
    return incident


@router.get("/incidents")
def incidents(
    user: Authed,
    ctx: Ctx,
    state_filter: Literal["open", "closed", "all"] = Query("open", alias="state"),
    camera_id: str | None = None,
    limit: int = Query(200, ge=1, le=2000),
) -> dict[str, Any]:
    with ctx.state.lock:
        chosen = ctx.state.book.select(state_filter, allowed_cameras(user), camera_id)
        return {"incidents": [i.summary() for i in chosen[:limit]], "count": len(chosen)}


@router.get("/incidents/{alert_id}")
def incident(alert_id: str, user: Authed, ctx: Ctx, request: Request) -> dict[str, Any]:
    found = visible_incident(ctx, alert_id, user, request)
    with ctx.state.lock:
        return found.detail()


@router.get("/incidents/{alert_id}/snapshot.jpg", responses={200: {"content": {"image/jpeg": {}}}})
def snapshot(alert_id: str, user: Authed, ctx: Ctx, request: Request) -> Response:
    found = visible_incident(ctx, alert_id, user, request)
    if found.snapshot_jpeg is None:
        raise HTTPException(404, f"incident {alert_id} has no evidence snapshot")
    return Response(found.snapshot_jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@router.post("/incidents/{alert_id}/actions", status_code=201)
def act(alert_id: str, body: ActionRequest, user: Authed, ctx: Ctx, request: Request) -> dict[str, Any]:
    """acknowledge | assign (assignee) | comment (comment) | false_alarm | close | reopen (supervisor)."""
    found = visible_incident(ctx, alert_id, user, request)
    if not allowed(user.role, permission_for_action(body.action)):
        raise ctx.deny(
            request,
            user,
            f"role {user.role} may not {body.action}",
            403,
            f"role {user.role!r} may not {body.action} incidents",
            camera_id=found.camera_id,
            alert_id=alert_id,
        )
    with ctx.state.lock:
        try:
            validate_action(found, body.action, body.assignee, body.comment)
        except ActionRejected as rejected:
            raise HTTPException(rejected.status, str(rejected)) from None
    action = Action(
        action_id=str(uuid.uuid4()),
        alert_id=alert_id,
        action=body.action,
        operator=user.name,
        timestamp_ms=int(time.time() * 1000),
        role=user.role,
        assignee=(body.assignee or "").strip() or None,
        comment=body.comment,
    )
    record = {
        "action_id": action.action_id,
        "alert_id": alert_id,
        "action": body.action.upper(),
        "operator": user.name,
        "role": user.role,
        "assignee": action.assignee,
        "comment": action.comment,
        "camera_id": found.camera_id,
        "zone_id": found.zone_id,
        "rule_id": found.rule_id,
        "console_instance": ctx.settings.instance_id,
        "timestamp": action.timestamp_ms,
    }
    try:
        ctx.feeds.publish_action(record)
    except RuntimeError as error:
        raise HTTPException(503, f"action not recorded, try again: {error}") from None
    with ctx.state.lock:
        ctx.state.book.apply_action(action)  # our own copy comes back from the topic too (deduplicated)
        result = found.detail()
    ctx.feeds.audit(
        user.name,
        "incident_action",
        True,
        role=user.role,
        camera_id=found.camera_id,
        alert_id=alert_id,
        detail=body.action,
        client=client(request),
    )
    return result


@router.get("/false-alarms")
def false_alarms(user: Authed, ctx: Ctx) -> dict[str, Any]:
    """False-alarm marks per camera, zone and rule (feeds the detection-quality work)."""
    with ctx.state.lock:
        return {"false_alarms": ctx.state.book.false_alarm_counts(allowed_cameras(user))}
