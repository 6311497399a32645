"""Example verifier for agencies (docs/consumers.md shows it): standard library only, copy it as is.

    ok = verify(secret, request.headers["X-Cctv-Timestamp"], request.headers["X-Cctv-Signature"], body)

Reject the request (401) unless it returns True; then deduplicate on the event's `id` (a retry after a
lost response carries the same id).
"""

from __future__ import annotations

import hashlib
import hmac
import time


def verify(
    secret: bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when `signature` is the HMAC-SHA256 of `<timestamp>.<body>` and the timestamp is recent."""
    if not timestamp or not signature or not signature.startswith("sha256="):
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        return False  # too old (or from the future): a replayed capture
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.removeprefix("sha256="))
