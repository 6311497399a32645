"""What every console route shares: the service's parts (one `Console` per app, on `app.state`), the
logged-in user as a dependency, and the refusals that go on the access ledger."""

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from libs.health import Health
from services.console.auth import CSRF_HEADER, SESSION_COOKIE, LoginThrottle, Signer, csrf_ok
from services.console.feeds import ConsoleFeeds
from services.console.frame_events import FrameEvents
from services.console.settings import ConsoleSettings
from services.console.state import ConsoleState
from services.console.users import User, UserStore
from services.console.views import LatencyBook


@dataclass
class Console:
    settings: ConsoleSettings
    state: ConsoleState
    feeds: ConsoleFeeds
    users: UserStore
    signer: Signer
    health: Health
    latency: LatencyBook = field(default_factory=LatencyBook)
    frame_events: FrameEvents = field(default_factory=FrameEvents)
    throttle: LoginThrottle = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.throttle = LoginThrottle(s.login_max_failures, s.login_lockout_s, s.login_lockout_s)

    def deny(
        self, request: Request, user: User | None, what: str, status: int, message: str, **about: Any
    ) -> HTTPException:
        """Refuse, and put the refusal on the access ledger."""
        self.feeds.audit(
            user.name if user else "-",
            "access_denied",
            False,
            role=user.role if user else None,
            detail=f"{request.method} {request.url.path}: {what}",
            client=client(request),
            **about,
        )
        return HTTPException(status, message)

    def need_camera(self, request: Request, user: User, camera_id: str) -> None:
        """403 (audited) for a camera outside the user's restriction, 404 for an unknown one."""
        with self.state.lock:
            known = camera_id in self.state.cameras
        if not user.can_see(camera_id):
            raise self.deny(
                request,
                user,
                "camera outside the user's restriction",
                403,
                f"you may not view camera {camera_id}",
                camera_id=camera_id,
            )
        if not known:
            raise HTTPException(404, f"no camera {camera_id!r}")


def client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def console(request: Request) -> Console:
    parts: Console = request.app.state.console
    return parts


Ctx = Annotated[Console, Depends(console)]


def current_user(request: Request, ctx: Ctx) -> User:
    """The user of a bearer token or session cookie; a change (not GET/HEAD) also needs the CSRF header."""
    credential = None
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        credential = ctx.signer.read_token(header[7:].strip())
    elif request.cookies.get(SESSION_COOKIE):
        credential = ctx.signer.read_session(request.cookies[SESSION_COOKIE])
    if credential is None:
        raise HTTPException(
            401,
            "not logged in (or the session expired): POST /api/v1/login",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = ctx.users.get(credential.username)
    if user is None:
        raise HTTPException(401, "this user no longer exists", headers={"WWW-Authenticate": "Bearer"})
    if request.method not in ("GET", "HEAD") and not csrf_ok(credential, request.headers.get(CSRF_HEADER)):
        raise ctx.deny(
            request,
            user,
            "missing or wrong CSRF token",
            403,
            f"missing or wrong {CSRF_HEADER} header (take it from GET /api/v1/me)",
        )
    request.state.csrf = credential.csrf
    return user


Authed = Annotated[User, Depends(current_user)]
