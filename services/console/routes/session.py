"""Log in (session cookie for the page, bearer token for scripts), log out, who am I."""

import hashlib
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from services.console.auth import SESSION_COOKIE, allowed
from services.console.routes.context import Authed, Ctx, client

router = APIRouter(prefix="/api/v1", tags=["auth"])


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


@router.post("/login")
def login(body: LoginRequest, ctx: Ctx, request: Request, response: Response) -> dict[str, Any]:
    """A session cookie for the page and a bearer token for scripts."""
    users, feeds, settings = ctx.users, ctx.feeds, ctx.settings
    # Per user name only: per address would let one guesser lock out a whole control room behind NAT.
    keys = ("user:" + body.username,)
    wait_s = ctx.throttle.retry_after(keys, time.monotonic())
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
        ctx.throttle.failed(keys, time.monotonic())
        # An unknown name may be a password typed into the wrong field: the ledger keeps only a digest
        # of it (enough to see repeated attempts), never the text.
        known = users.get(body.username) is not None
        actor = body.username if known else "unknown-user:" + hashlib.sha256(body.username.encode()).hexdigest()[:12]
        feeds.audit(
            actor,
            "login_failed",
            False,
            client=client(request),
            detail="wrong password" if known else "unknown user name",
        )
        raise HTTPException(401, "invalid username or password")
    ctx.throttle.succeeded(keys)
    cookie, csrf = ctx.signer.new_session(user.name)
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
        "token": ctx.signer.new_token(user.name),
        "token_type": "bearer",
        "expires_in_s": settings.token_max_age_s,
        "csrf_token": csrf,
        "user": user.public(),
    }


@router.post("/logout")
def logout(user: Authed, ctx: Ctx, request: Request, response: Response) -> dict[str, Any]:
    response.delete_cookie(SESSION_COOKIE, path="/")
    ctx.feeds.audit(user.name, "logout", True, role=user.role, client=client(request))
    return {"ok": True}


@router.get("/me")
def me(user: Authed, request: Request) -> dict[str, Any]:
    return {
        "user": user.public(),
        "csrf_token": request.state.csrf,
        "may_act": allowed(user.role, "act"),
        "may_reopen": allowed(user.role, "reopen"),
        "may_audit": allowed(user.role, "audit"),
    }
