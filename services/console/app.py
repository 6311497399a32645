"""The console's HTTP side: JSON API under /api/v1 (OpenAPI at /api/v1/openapi.json), the static
front end, probes and metrics. Only composition: the routes live in services/console/routes/ (one
APIRouter per area), decisions in incidents/wall/auth, Kafka in feeds."""

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app

from libs.health import Health
from services.console.auth import Signer
from services.console.feeds import ConsoleFeeds
from services.console.routes import cameras, evidence, incidents, ledger, oversight, pages, session, shares, wall
from services.console.routes.context import Console
from services.console.routes.pages import STATIC
from services.console.settings import ConsoleSettings
from services.console.state import ConsoleState
from services.console.users import UserStore

# Everything from this origin only; frames arrive as blob: URLs; no framing by other sites (clickjacking).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

# One line per area; a route reaches the service's parts through `routes.context` (Ctx, Authed).
ROUTERS: tuple[APIRouter, ...] = (
    pages.router,
    session.router,
    wall.router,
    cameras.router,
    incidents.router,
    oversight.router,
    shares.router,
    ledger.router,
    evidence.router,
)


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
    console = Console(settings, state, feeds, users, signer, health)
    app.state.console = console
    state.frame_waiters = console.frame_events.notify_threadsafe

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    app.mount("/metrics", make_asgi_app())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app
