"""Probes and the page itself (no schema entries: they are not the API)."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from services.console.routes.context import Ctx

STATIC = Path(__file__).parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
def healthz(ctx: Ctx) -> JSONResponse:
    ok, reason = ctx.health.live()
    return JSONResponse({"ok": ok, "reason": reason}, 200 if ok else 503)


@router.get("/readyz")
def readyz(ctx: Ctx) -> JSONResponse:
    ok, reason = ctx.health.readiness()
    return JSONResponse({"ok": ok, "reason": reason}, 200 if ok else 503)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
