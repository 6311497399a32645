"""The evidence reference an alert carries (Alert.evidence): shared by alert-router, which sets it, and
the clip-writer and `cctv evidence`, which store and resolve the clip under the same id."""

from __future__ import annotations

from typing import Any

URI_PREFIX = "cctv-evidence://clips/"


def evidence_reference(alert_id: str) -> dict[str, Any]:
    """Alert.evidence for an incident: its clip is stored under the alert id (deterministic, so the
    reference is known before the clip exists)."""
    return {"clip_id": alert_id, "uri": URI_PREFIX + alert_id}


def clip_id_from_uri(uri: str) -> str:
    if not uri.startswith(URI_PREFIX) or len(uri) == len(URI_PREFIX):
        raise ValueError(f"not an evidence URI: {uri!r} (expected {URI_PREFIX}<clip_id>)")
    return uri[len(URI_PREFIX) :]
