"""The public HTTP side of the gateway: a share link plays without login (the token is the credential).

/s/<token>/             a small offline player page (plain <video>; no script, nothing from outside)
/s/<token>/index.m3u8   the live HLS playlist (what VLC, ffplay, PyAV or Safari open)
/s/<token>/<n>.ts       MPEG-TS segments
Every request checks the share's state, so revocation and expiry stop playback at the next request.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from prometheus_client import Counter

from libs.shares import ShareBook, ShareTokens, status_of
from services.share_gateway.core import UNMASKED_WITHDRAWN, ViewerSessions, iso, refusal, releasable
from services.share_gateway.streams import LiveStreams

REFUSALS = Counter("cctv_share_gateway_refusals_total", "Share requests refused", ["reason"])
OPENED = Counter("cctv_share_gateway_viewer_sessions_total", "Viewing sessions opened (one per viewer)")
CSP = "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
_PLAYER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Live camera {camera}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{margin:0;background:#111;color:#eee;font:15px system-ui,sans-serif}}
video{{width:100%;max-height:85vh;background:#000}}p{{margin:.6em 1em}}a{{color:#9cf}}</style></head>
<body><video src="index.m3u8" controls autoplay muted playsinline></video>
<p>Camera <b>{camera}</b> shared with <b>{agency}</b> for: {purpose}. {masking}
This link stops working at <b>{expires}</b> or when the control room revokes it.</p>
<p>If the video stays black, this browser does not play HLS itself (Safari, iOS and Android do; desktop
Chrome and Firefox may not): open <a href="index.m3u8">this playlist URL</a> in VLC, mpv or ffplay.</p>
</body></html>
"""


def create_edge_app(
    book: ShareBook,
    tokens: ShareTokens,
    streams: LiveStreams,
    sessions: ViewerSessions,
    on_opened: Callable[[dict[str, Any], str], None],
    first_segment_wait_s: float,
    unmasked_allowed: Callable[[str], bool] = lambda _agency: True,
) -> FastAPI:
    app = FastAPI(title="CCTV share gateway", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")  # the token is in the URL
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("Access-Control-Allow-Origin", "*")  # agencies' own web players
        return response

    def share_for(token: str) -> tuple[dict[str, Any] | None, Response | None]:
        share_id = tokens.share_id(token)
        record = book.get(share_id) if share_id else None
        refused = refusal(status_of(record, int(time.time() * 1000)), record)
        if refused is None and record is not None and not releasable(record, unmasked_allowed):
            REFUSALS.labels("unmasked").inc()
            return None, PlainTextResponse(UNMASKED_WITHDRAWN + "\n", 403)
        if refused is None:
            return record, None
        status, message = refused
        REFUSALS.labels("invalid" if status == 403 else "ended").inc()
        return None, PlainTextResponse(message + "\n", status)

    def client(request: Request) -> str:
        return request.client.host if request.client else "-"

    @app.get("/s/{token}", include_in_schema=False)
    def without_slash(token: str) -> Response:
        """The page's relative playlist URL needs the trailing slash (a link pasted without it still works)."""
        return RedirectResponse(f"{token}/", status_code=308)

    @app.get("/s/{token}/", response_class=HTMLResponse)
    def player(token: str) -> Response:
        record, refused = share_for(token)
        if refused is not None:
            return refused
        assert record is not None
        masking = "Faces, heads and plates are blurred." if record["masked"] else "Released unmasked (audited)."
        page = _PLAYER.format(
            camera=html.escape(record["camera_id"]),
            agency=html.escape(record["agency"]),
            purpose=html.escape(record["purpose"]),
            masking=masking,
            expires=iso(record["expires_at"]),
        )
        return HTMLResponse(page)

    @app.get("/s/{token}/index.m3u8")
    async def playlist(token: str, request: Request) -> Response:
        record, refused = share_for(token)
        if refused is not None:
            return refused
        assert record is not None
        if sessions.seen(record["share_id"], client(request), time.monotonic()):
            OPENED.inc()
            on_opened(record, client(request))
        deadline = time.monotonic() + first_segment_wait_s
        while True:  # the first viewer of a camera waits for its first segment instead of a failed open
            stream = streams.stream(record["camera_id"], record["masked"])
            text = stream.playlist() if stream is not None else None
            if text is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if text is None:
            return PlainTextResponse(
                f"No video from camera {record['camera_id']} yet; try again in a few seconds.\n",
                503,
                headers={"Retry-After": "2"},
            )
        return Response(text, media_type="application/vnd.apple.mpegurl")

    @app.get("/s/{token}/{index}.ts")
    def segment(token: str, index: int, request: Request) -> Response:
        record, refused = share_for(token)
        if refused is not None:
            return refused
        assert record is not None
        sessions.seen(record["share_id"], client(request), time.monotonic())  # keeps the session open
        stream = streams.stream(record["camera_id"], record["masked"])
        found = stream.segment(index) if stream is not None else None
        if found is None:
            return PlainTextResponse(f"segment {index} is no longer (or not yet) available\n", 404)
        return Response(
            found.data, media_type="video/mp2t", headers={"X-First-Capture-Time-Us": str(found.first_capture_us)}
        )

    return app
