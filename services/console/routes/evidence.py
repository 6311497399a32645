"""An incident's evidence clip in the console: what is stored, and the video itself, played and
downloaded through the console (operators' browsers never reach the object store), with HTTP Range so
the player can seek.

Operators and up get the masked copy; the unmasked original only supervisors and admins, with a reason.
Who may fetch what, and the audit records, are libs/evidence_access.py's (shared with `cctv evidence`).
A playback is audited once (evidence.view) per user, clip, variant and 10 minutes on this replica, not
per range request; a download (evidence.download) likewise once per 10 minutes.
An incident older than the console's in-memory window is still served by its alert id: the stored
manifest names its camera, which the user's camera restriction is checked against.
"""

import re
import threading
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response

from libs.evidence_access import DOWNLOAD_ROLES, ORIGINAL_ROLES, Actor, EvidenceAccess, NotFound, NotReady
from libs.evidence_audit import AuditFailed, AuditLog
from libs.evidence_store import EvidenceStore, RangeNotSatisfiable, StorageUnavailable
from services.console.routes.context import Authed, Console, Ctx, client
from services.console.routes.incidents import visible_incident
from services.console.users import User

router = APIRouter(prefix="/api/v1", tags=["evidence"])
AUDIT_WINDOW_S = 600.0
MAX_CHUNK = 4 * 1024 * 1024  # an open-ended range ("bytes=0-") is answered in pieces of this size
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Desk:
    """The console's evidence access (made on first use, so a console without a store still starts) and
    its audit de-duplication."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.access: EvidenceAccess | None = None
        self.audited: dict[tuple[str, ...], float] = {}

    def get(self, ctx: Console) -> EvidenceAccess:
        with self.lock:
            if self.access is None:
                if ctx.settings.s3 is None:
                    raise HTTPException(503, "no evidence store configured (CCTV_S3__ENDPOINT_URL, CCTV_S3__BUCKET)")
                audit = AuditLog(ctx.feeds.producer, ctx.feeds.serde)
                self.access = EvidenceAccess(EvidenceStore(ctx.settings.s3), audit)
            return self.access

    def first_in_window(self, key: tuple[str, ...]) -> bool:
        now = time.monotonic()
        with self.lock:
            for old in [k for k, at in self.audited.items() if now - at > AUDIT_WINDOW_S]:
                del self.audited[old]
            if key in self.audited:
                return False
            self.audited[key] = now
            return True

    def forget(self, key: tuple[str, ...]) -> None:
        """Nothing was handed out (refused, not ready, failed): the next attempt is audited afresh."""
        with self.lock:
            self.audited.pop(key, None)


_DESK_LOCK = threading.Lock()


def desk_of(request: Request) -> _Desk:
    """One per app (on app.state, like the Console itself)."""
    with _DESK_LOCK:
        desk: _Desk | None = getattr(request.app.state, "evidence_desk", None)
        if desk is None:
            desk = request.app.state.evidence_desk = _Desk()
        return desk


def _actor(user: User, request: Request) -> Actor:
    return Actor(user.name, frozenset({user.role}), client(request))


def _clip_allowed(ctx: Console, access: EvidenceAccess, alert_id: str, user: User, request: Request) -> None:
    """403 (audited) unless `user` may see the clip's camera. An incident still in the in-memory window
    is checked as usual; an older one (opened by id, e.g. from the ledger or an agency's question) by the
    camera its stored manifest names, so its clip stays reachable after the window."""
    with ctx.state.lock:
        in_window = ctx.state.book.get(alert_id) is not None
    if in_window:
        visible_incident(ctx, alert_id, user, request)
        return
    try:
        manifest = access.store.manifest(alert_id)
    except StorageUnavailable as error:
        raise _evidence_errors(error) from None
    if manifest is None:
        raise HTTPException(404, f"no incident and no evidence clip stored with alert_id {alert_id!r}")
    camera_id = manifest["camera_id"]
    if not user.can_see(camera_id):
        raise ctx.deny(
            request,
            user,
            "evidence clip of a camera outside the user's restriction",
            403,
            f"you may not see incidents of camera {camera_id}",
            camera_id=camera_id,
            alert_id=alert_id,
        )


def _evidence_errors(error: Exception) -> HTTPException:
    if isinstance(error, PermissionError):
        return HTTPException(403, str(error))
    if isinstance(error, NotReady):
        return HTTPException(409, str(error))
    if isinstance(error, NotFound):
        return HTTPException(404, str(error))
    if isinstance(error, AuditFailed):
        return HTTPException(503, f"not handed out, the audit record was not acknowledged: {error}")
    return HTTPException(503, f"evidence store unavailable: {error}")


@router.get("/incidents/{alert_id}/clip")
def clip(alert_id: str, user: Authed, ctx: Ctx, request: Request) -> dict[str, Any]:
    """The incident's stored clip: segments with their player/download URLs (no video handed out here)."""
    access = desk_of(request).get(ctx)
    _clip_allowed(ctx, access, alert_id, user, request)
    try:
        manifest = access.store.manifest(alert_id)
        release = access.masked_manifest(alert_id) if manifest is not None else None
    except StorageUnavailable as error:
        raise _evidence_errors(error) from None
    if manifest is None:
        raise HTTPException(
            404, f"no evidence clip stored for alert {alert_id} (yet: it is written after the incident)"
        )
    base = f"/api/v1/incidents/{alert_id}/clip"
    return {
        "alert_id": alert_id,
        "camera_id": manifest["camera_id"],
        "clip": manifest["clip"],
        "masked_ready": release is not None,
        "may_play": user.role in DOWNLOAD_ROLES,
        "may_fetch_original": user.role in ORIGINAL_ROLES,
        "segments": [
            {
                "index": index,
                "start_us": item["start_us"],
                "end_us": item["end_us"],
                "masked_url": f"{base}/{index}.mp4",
                "masked_size": release["objects"][index]["size"] if release else None,
                "masked_sha256": release["objects"][index]["sha256"] if release else None,
                "original_sha256": item["sha256"],
            }
            for index, item in enumerate(manifest["objects"])
        ],
    }


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `Range: bytes=` header, None for the whole object; 416 if unusable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        raise HTTPException(416, "only one byte range (bytes=first-last) is served", headers=_unsatisfied(size))
    first_text, last_text = match.groups()
    if first_text == "":  # the last N bytes
        first, last = max(0, size - int(last_text)), size - 1
    else:
        first, last = int(first_text), min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or first > last:
        raise HTTPException(416, f"range beyond the clip's {size} bytes", headers=_unsatisfied(size))
    return first, min(last, first + MAX_CHUNK - 1)


def _unsatisfied(size: int) -> dict[str, str]:
    return {"Content-Range": f"bytes */{size}"}


@router.get(
    "/incidents/{alert_id}/clip/{index}.mp4",
    responses={200: {"content": {"video/mp4": {}}}, 206: {"content": {"video/mp4": {}}}},
)
def clip_video(
    alert_id: str,
    index: int,
    user: Authed,
    ctx: Ctx,
    request: Request,
    variant: Literal["masked", "original"] = "masked",
    reason: Annotated[str, Query(max_length=500)] = "",
    download: bool = False,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """One segment of the clip as MP4 (Range supported). `variant=original` needs a supervisor and a
    `reason`; `download=1` makes it an attachment. Audited before any byte is sent."""
    desk = desk_of(request)
    access = desk.get(ctx)
    _clip_allowed(ctx, access, alert_id, user, request)
    what = "evidence.download" if download else "evidence.view"
    # Refusals are always audited (by authorise); an allowed fetch once per window and reason.
    key = (user.name, alert_id, variant, what, reason.strip())
    first_time = desk.first_in_window(key)
    try:
        objects = access.authorise(alert_id, _actor(user, request), variant, reason, action=what, audit=first_time)
    except (PermissionError, NotReady, NotFound, AuditFailed, StorageUnavailable) as error:
        if first_time:
            desk.forget(key)
        raise _evidence_errors(error) from None
    if not 0 <= index < len(objects):
        raise HTTPException(404, f"the clip of alert {alert_id} has {len(objects)} segment(s)")
    item = objects[index]
    wanted = _byte_range(range_header, item["size"])
    first, last = wanted if wanted else (0, item["size"] - 1)  # no Range: the whole segment
    try:
        got = access.store.get_range(item["key"], first, last)
    except RangeNotSatisfiable as error:
        raise HTTPException(416, str(error), headers=_unsatisfied(error.size)) from None
    except StorageUnavailable as error:
        raise _evidence_errors(error) from None
    if got is None:
        raise HTTPException(404, f"{item['key']} is missing from the store (run `cctv evidence verify {alert_id}`)")
    data, total = got
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        "X-Evidence-SHA256": item["sha256"],
    }
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{alert_id}-{variant}-{index:03d}.mp4"'
    partial = wanted is not None
    if partial:
        headers["Content-Range"] = f"bytes {first}-{first + len(data) - 1}/{total}"
    return Response(data, status_code=206 if partial else 200, media_type="video/mp4", headers=headers)
