"""The evidence reference an alert carries (Alert.evidence): shared by alert-router, which sets it, and
the clip-writer and `cctv evidence`, which store and resolve the clip under the same id."""

from __future__ import annotations

import re
from typing import Any

URI_PREFIX = "cctv-evidence://clips/"
_ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_alert_id(alert_id: str) -> str:
    """Alert ids become object keys: refuse anything that could escape its prefix."""
    if not _ALERT_ID.match(alert_id or ""):
        raise ValueError(f"alert id {alert_id!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return alert_id


def evidence_reference(alert_id: str) -> dict[str, Any]:
    """Alert.evidence for an incident: its clip is stored under the alert id (deterministic, so the
    reference is known before the clip exists)."""
    return {"clip_id": alert_id, "uri": URI_PREFIX + alert_id}


def clip_id_from_uri(uri: str) -> str:
    if not uri.startswith(URI_PREFIX) or len(uri) == len(URI_PREFIX):
        raise ValueError(f"not an evidence URI: {uri!r} (expected {URI_PREFIX}<clip_id>)")
    return uri[len(URI_PREFIX) :]
