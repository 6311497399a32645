"""The access ledger's record (schemas/audit.avsc: AuditRecord on cctv.audit.v1), built one way for
every producer: the console (logins, live views, incident actions, denials), the clip-writer and
`cctv evidence` (holds, releases, downloads, deletions). Privacy law asks that every view and release be
recorded; the detail is redacted so no credential ever reaches the ledger."""

from __future__ import annotations

import time
import uuid
from typing import Any

from libs.redact import redact_text

SCHEMA = "AuditRecord"
_ACTOR_LIMIT = 200
_DETAIL_LIMIT = 4000


def audit_record(
    actor: str,
    what: str,
    *,
    allowed: bool,
    instance: str,
    role: str | None = None,
    camera_id: str | None = None,
    alert_id: str | None = None,
    detail: str | None = None,
    client_address: str | None = None,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """One AuditRecord: `what` names the act (login, live_view, evidence.download, ...), `instance` the
    process that recorded it."""
    if not actor or not what:
        raise ValueError("an audit record needs an actor and what they did")
    return {
        "audit_id": str(uuid.uuid4()),
        "actor": actor[:_ACTOR_LIMIT],
        "role": role,
        "what": what,
        "outcome": "ALLOWED" if allowed else "DENIED",
        "camera_id": camera_id,
        "alert_id": alert_id,
        "detail": redact_text(detail)[:_DETAIL_LIMIT] if detail else None,
        "client_address": client_address,
        "console_instance": instance,
        "timestamp": at_ms if at_ms is not None else int(time.time() * 1000),
    }
