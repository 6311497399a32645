"""Pure: a routed alert → a signed CloudEvents 1.0 (structured JSON) request body and headers.

Signature: HMAC-SHA256 over `<timestamp>.<body>` with the endpoint's secret, sent as
`X-Cctv-Signature: sha256=<hex>` next to `X-Cctv-Timestamp: <unix seconds>`. Signing the timestamp
lets a receiver refuse replays of an old, captured request (services/dispatcher/verify.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TIMESTAMP_HEADER = "X-Cctv-Timestamp"
SIGNATURE_HEADER = "X-Cctv-Signature"
EVENT_SOURCE = "urn:cctv:alert-router"
# Alert fields that are not sent as-is: bytes (the snapshot travels separately, masked) and Kafka
# coordinates that mean nothing outside the centre.
_NOT_SENT = {"snapshot_jpeg", "frame"}
_TIMESTAMPS_US = ("started_at", "detected_at", "ended_at", "produced_at")


def event_id(alert: dict[str, Any]) -> str:
    """alert_id:kind:sequence — the same on every retry and replay, so a receiver deduplicates on it."""
    return f"{alert['alert_id']}:{str(alert['kind']).lower()}:{alert['sequence']}"


def event_type(alert: dict[str, Any]) -> str:
    return f"org.cctv.alert.{str(alert['kind']).lower()}"


def iso_from_us(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC).isoformat().replace("+00:00", "Z")


def alert_data(alert: dict[str, Any]) -> dict[str, Any]:
    """The event's `data`: the alert as JSON, times as RFC 3339 strings, without bytes or Kafka coordinates."""
    data = {k: v for k, v in alert.items() if k not in _NOT_SENT}
    for key in _TIMESTAMPS_US:
        if data.get(key) is not None:
            data[key] = iso_from_us(int(data[key]))
    data["has_snapshot"] = alert.get("snapshot_jpeg") is not None
    return data


def cloud_event(alert: dict[str, Any], destination: str, extra_data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id(alert),
        "source": EVENT_SOURCE,
        "type": event_type(alert),
        "subject": str(alert["camera_id"]),
        "time": iso_from_us(int(alert["detected_at"])),
        "datacontenttype": "application/json",
        "destination": destination,  # CloudEvents extension attribute: which agency it was routed to
        "incident": str(alert["alert_id"]),  # extension: group events of one incident without parsing `id`
        "data": alert_data(alert) | (extra_data or {}),
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, timestamp: int, body: bytes, event: dict[str, Any]) -> dict[str, str]:
    return {
        "Content-Type": CONTENT_TYPE,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        "Idempotency-Key": event["id"],
    }
