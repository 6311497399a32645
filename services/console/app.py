"""The console's HTTP side: JSON API under /api/v1 (OpenAPI at /api/v1/openapi.json), the static
front end, probes and metrics. Thin: decisions live in incidents/wall/auth, Kafka in feeds."""

import asyncio
import contextlib
import hashlib
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from pydantic import BaseModel, Field

from libs.health import Health
from services.console.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginThrottle,
    Signer,
    allowed,
    csrf_ok,
    permission_for_action,
)
from services.console.feeds import ConsoleFeeds, ConsoleState
from services.console.frame_events import FrameEvents, frame_stream
from services.console.incidents import Action, ActionRejected, validate_action
from services.console.settings import ConsoleSettings
from services.console.users import User, UserStore
from services.console.views import (
    LatencyBook,
    allowed_cameras,
    health_view,
    platform_view,
    wall_view,
)
from services.console.wall import cameras_within

STATIC = Path(__file__).parent / "static"
# Everything from this origin only; frames arrive as blob: URLs; no framing by other sites (clickjacking).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class ActionRequest(BaseModel):
    action: Literal["acknowledge", "assign", "comment", "false_alarm", "close", "reopen"]
    assignee: str | None = Field(default=None, max_length=200)
    comment: str | None = Field(default=None, max_length=2000)


class LatencyReport(BaseModel):
    samples_ms: list[float] = Field(max_length=100)


def create_app(
    settings: ConsoleSettings,
    state: ConsoleState,
    feeds: ConsoleFeeds,
    users: UserStore,
    signer: Signer,
    health: Health,
) -> FastAPI:
    # No Swagger UI: it loads its scripts from a CDN, and the console loads nothing from outside.
    app = FastAPI(
        title="CCTV control-room console",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    latency = LatencyBook()
    throttle = LoginThrottle(settings.login_max_failures, settings.login_lockout_s, settings.login_lockout_s)

    def client(request: Request) -> str | None:
        return request.client.host if request.client else None

    def deny(request: Request, user: User | None, what: str, status: int, message: str, **about: Any) -> HTTPException:
        """Refuse, and put the refusal on the access ledger."""
        feeds.audit(
            user.name if user else "-",
            "access_denied",
            False,
            role=user.role if user else None,
            detail=f"{request.method} {request.url.path}: {what}",
            client=client(request),
            **about,
        )
        return HTTPException(status, message)

    def current_user(request: Request) -> User:
        credential = None
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            credential = signer.read_token(header[7:].strip())
        elif request.cookies.get(SESSION_COOKIE):
            credential = signer.read_session(request.cookies[SESSION_COOKIE])
        if credential is None:
            raise HTTPException(
                401,
                "not logged in (or the session expired): POST /api/v1/login",
                headers={"WWW-Authenticate": "Bearer"},
            )
        user = users.get(credential.username)
        if user is None:
            raise HTTPException(401, "this user no longer exists", headers={"WWW-Authenticate": "Bearer"})
        if request.method not in ("GET", "HEAD") and not csrf_ok(credential, request.headers.get(CSRF_HEADER)):
            raise deny(
                request,
                user,
                "missing or wrong CSRF token",
                403,
                f"missing or wrong {CSRF_HEADER} header (take it from GET /api/v1/me)",
            )
        request.state.csrf = credential.csrf
        return user

    Authed = Annotated[User, Depends(current_user)]

    def need_camera(request: Request, user: User, camera_id: str) -> None:
        with state.lock:
            known = camera_id in state.cameras
        if not user.can_see(camera_id):
            raise deny(
                request,
                user,
                "camera outside the user's restriction",
                403,
                f"you may not view camera {camera_id}",
                camera_id=camera_id,
            )
        if not known:
            raise HTTPException(404, f"no camera {camera_id!r}")

    # --- probes, metrics, page --------------------------------------------------------------------

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        ok, reason = health.live()
        return JSONResponse({"ok": ok, "reason": reason}, 200 if ok else 503)

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        ok, reason = health.readiness()
        return JSONResponse({"ok": ok, "reason": reason}, 200 if ok else 503)

    app.mount("/metrics", make_asgi_app())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    # --- sessions ---------------------------------------------------------------------------------

    @app.post("/api/v1/login", tags=["auth"])
    def login(body: LoginRequest, request: Request, response: Response) -> dict[str, Any]:
        """A session cookie for the page and a bearer token for scripts."""
        # Per user name only: per address would let one guesser lock out a whole control room behind NAT.
        keys = ("user:" + body.username,)
        wait_s = throttle.retry_after(keys, time.monotonic())
        if wait_s > 0:
            feeds.audit(
                body.username if users.get(body.username) else "-",
                "login_throttled",
                False,
                client=client(request),
                detail=f"locked for {wait_s:.0f} s more after repeated failures",
            )
            raise HTTPException(
                429,
                f"too many failed logins; try again in {wait_s:.0f} s",
                headers={"Retry-After": str(int(wait_s) + 1)},
            )
        user = users.authenticate(body.username, body.password)
        if user is None:
            throttle.failed(keys, time.monotonic())
            # An unknown name may be a password typed into the wrong field: the ledger keeps only a digest
            # of it (enough to see repeated attempts), never the text.
            known = users.get(body.username) is not None
            actor = (
                body.username if known else "unknown-user:" + hashlib.sha256(body.username.encode()).hexdigest()[:12]
            )
            feeds.audit(
                actor,
                "login_failed",
                False,
                client=client(request),
                detail="wrong password" if known else "unknown user name",
            )
            raise HTTPException(401, "invalid username or password")
        throttle.succeeded(keys)
        cookie, csrf = signer.new_session(user.name)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=settings.session_max_age_s,
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookies,
            path="/",
        )
        feeds.audit(user.name, "login", True, role=user.role, client=client(request))
        return {
            "token": signer.new_token(user.name),
            "token_type": "bearer",
            "expires_in_s": settings.token_max_age_s,
            "csrf_token": csrf,
            "user": user.public(),
        }

    @app.post("/api/v1/logout", tags=["auth"])
    def logout(user: Authed, request: Request, response: Response) -> dict[str, Any]:
        response.delete_cookie(SESSION_COOKIE, path="/")
        feeds.audit(user.name, "logout", True, role=user.role, client=client(request))
        return {"ok": True}

    @app.get("/api/v1/me", tags=["auth"])
    def me(user: Authed, request: Request) -> dict[str, Any]:
        return {
            "user": user.public(),
            "csrf_token": request.state.csrf,
            "may_act": allowed(user.role, "act"),
            "may_reopen": allowed(user.role, "reopen"),
            "may_audit": allowed(user.role, "audit"),
        }

    # --- wall and cameras -------------------------------------------------------------------------

    @app.get("/api/v1/wall", tags=["wall"])
    def wall(user: Authed) -> dict[str, Any]:
        """Tiles of active cameras and cameras with open incidents, in the operator's order."""
        return wall_view(state, user, settings.wall_max_tiles, latency, settings.silent_after_s)

    @app.post("/api/v1/latency", tags=["wall"])
    def report_latency(body: LatencyReport, user: Authed) -> dict[str, Any]:
        """Browsers report capture→pixels samples; the footer shows the aggregate."""
        latency.add(body.samples_ms)
        return latency.summary()

    @app.get("/api/v1/cameras", tags=["cameras"])
    def cameras(
        user: Authed,
        lat: float | None = Query(None, ge=-90, le=90),
        lon: float | None = Query(None, ge=-180, le=180),
        radius_m: float | None = Query(None, gt=0, le=100_000),
    ) -> dict[str, Any]:
        """Every camera the user may see; with lat, lon and radius_m only those within the radius."""
        given = [v is not None for v in (lat, lon, radius_m)]
        if any(given) and not all(given):
            raise HTTPException(422, "a radius search needs all of lat, lon and radius_m")
        with state.lock:
            visible = [c for c in state.cameras.values() if c.in_inventory and user.can_see(c.camera_id)]
            open_by_camera: dict[str, int] = {}
            for incident in state.book.select("open"):
                open_by_camera[incident.camera_id] = open_by_camera.get(incident.camera_id, 0) + 1
            if lat is not None and lon is not None and radius_m is not None:
                rows = [
                    c.summary() | {"distance_m": round(d, 1)} for c, d in cameras_within(visible, lat, lon, radius_m)
                ]
            else:
                rows = [c.summary() for c in sorted(visible, key=lambda c: c.camera_id)]
        for row in rows:
            row["open_incidents"] = open_by_camera.get(row["camera_id"], 0)
        return {"cameras": rows, "count": len(rows)}

    @app.get("/api/v1/cameras/{camera_id}", tags=["cameras"])
    def camera(camera_id: str, user: Authed, request: Request) -> dict[str, Any]:
        """One camera full-size: its state and recent incidents. Opening it is a live view (audited)."""
        need_camera(request, user, camera_id)
        with state.lock:
            state.watch([camera_id])
            summary = state.camera(camera_id).summary()
            recent = [i.summary() for i in state.book.select("all", camera_id=camera_id)[:20]]
        feeds.audit(user.name, "live_view", True, role=user.role, camera_id=camera_id, client=client(request))
        return summary | {"recent_incidents": recent}

    frame_events = FrameEvents()
    state.frame_waiters = frame_events.notify_threadsafe

    @app.get(
        "/api/v1/wall/frames",
        tags=["wall"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def wall_frames(user: Authed, request: Request) -> StreamingResponse:
        """Server-sent events: `frame` {camera_id, sequence, capture_time_us} whenever the latest frame of
        a camera on the wall changes; the page then fetches it. One connection for the whole wall.
        Opening it is opening the live wall: audited (once per page, not per tile or frame)."""
        feeds.audit(user.name, "live_view", True, role=user.role, detail="wall", client=client(request))
        return StreamingResponse(
            frame_stream(frame_events, state, request, user.can_see),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/api/v1/cameras/{camera_id}/frame.jpg", tags=["cameras"], responses={200: {"content": {"image/jpeg": {}}}}
    )
    async def frame(
        camera_id: str,
        user: Authed,
        request: Request,
        after: int | None = Query(None, description="only a frame newer than this sequence"),
        wait_s: float = Query(0, ge=0, le=10, description="long-poll: wait this long for it"),
    ) -> Response:
        """The latest frame; X-Capture-Time-Us says when it was captured (for the latency footer).

        With `after` and `wait_s` the answer comes as soon as a newer frame arrives (204 if none in time),
        so tiles show frames the moment the console has them without polling fast."""
        need_camera(request, user, camera_id)
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

    # --- incidents --------------------------------------------------------------------------------

    @app.get("/api/v1/incidents", tags=["incidents"])
    def incidents(
        user: Authed,
        state_filter: Literal["open", "closed", "all"] = Query("open", alias="state"),
        camera_id: str | None = None,
        limit: int = Query(200, ge=1, le=2000),
    ) -> dict[str, Any]:
        with state.lock:
            chosen = state.book.select(state_filter, allowed_cameras(user), camera_id)
            return {"incidents": [i.summary() for i in chosen[:limit]], "count": len(chosen)}

    def visible_incident(alert_id: str, user: User, request: Request) -> Any:
        with state.lock:
            incident = state.book.get(alert_id)
        if incident is None:
            raise HTTPException(
                404, f"no incident with alert_id {alert_id!r} (in the last {settings.incident_window_h:g} h)"
            )
        if not user.can_see(incident.camera_id):
            raise deny(
                request,
                user,
                "incident of a camera outside the user's restriction",
                403,
                f"you may not see incidents of camera {incident.camera_id}",
                camera_id=incident.camera_id,
                alert_id=alert_id,
            )
        return incident

    @app.get("/api/v1/incidents/{alert_id}", tags=["incidents"])
    def incident(alert_id: str, user: Authed, request: Request) -> dict[str, Any]:
        found = visible_incident(alert_id, user, request)
        with state.lock:
            return found.detail()

    @app.get(
        "/api/v1/incidents/{alert_id}/snapshot.jpg",
        tags=["incidents"],
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def snapshot(alert_id: str, user: Authed, request: Request) -> Response:
        found = visible_incident(alert_id, user, request)
        if found.snapshot_jpeg is None:
            raise HTTPException(404, f"incident {alert_id} has no evidence snapshot")
        return Response(found.snapshot_jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})

    @app.post("/api/v1/incidents/{alert_id}/actions", tags=["incidents"], status_code=201)
    def act(alert_id: str, body: ActionRequest, user: Authed, request: Request) -> dict[str, Any]:
        """acknowledge | assign (assignee) | comment (comment) | false_alarm | close | reopen (supervisor)."""
        found = visible_incident(alert_id, user, request)
        if not allowed(user.role, permission_for_action(body.action)):
            raise deny(
                request,
                user,
                f"role {user.role} may not {body.action}",
                403,
                f"role {user.role!r} may not {body.action} incidents",
                camera_id=found.camera_id,
                alert_id=alert_id,
            )
        with state.lock:
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
            "console_instance": settings.instance_id,
            "timestamp": action.timestamp_ms,
        }
        try:
            feeds.publish_action(record)
        except RuntimeError as error:
            raise HTTPException(503, f"action not recorded, try again: {error}") from None
        with state.lock:
            state.book.apply_action(action)  # our own copy comes back from the topic too (deduplicated)
            result = found.detail()
        feeds.audit(
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

    @app.get("/api/v1/false-alarms", tags=["incidents"])
    def false_alarms(user: Authed) -> dict[str, Any]:
        """False-alarm marks per camera, zone and rule (feeds the detection-quality work)."""
        with state.lock:
            return {"false_alarms": state.book.false_alarm_counts(allowed_cameras(user))}

    # --- health, platform, audit ------------------------------------------------------------------

    @app.get("/api/v1/health", tags=["health"])
    def camera_health(user: Authed) -> dict[str, Any]:
        """Connection state per camera, maintenance alerts, pipeline lag, service lifecycle events."""
        return health_view(state, user, settings.silent_after_s)

    @app.get("/api/v1/platform-events", tags=["health"])
    def platform_events(user: Authed) -> dict[str, Any]:
        with state.lock:
            return platform_view(state, limit=50)

    @app.get("/api/v1/audit", tags=["audit"])
    def audit(
        user: Authed,
        request: Request,
        limit: int = Query(200, ge=1, le=2000),
        actor: str | None = None,
        camera_id: str | None = None,
    ) -> dict[str, Any]:
        """Recent access-ledger entries, newest first (supervisors and admins)."""
        if not allowed(user.role, "audit"):
            raise deny(
                request,
                user,
                "audit read needs supervisor or admin",
                403,
                f"role {user.role!r} may not read the audit log",
            )
        with state.lock:
            rows = [
                r
                for r in reversed(state.audit)
                if (actor is None or r["actor"] == actor) and (camera_id is None or r["camera_id"] == camera_id)
            ]
        return {"records": rows[:limit], "count": len(rows)}

    return app
