"""The gateway's decisions, free of Kafka and HTTP: what a link answers, and which requests open a
viewing session (audited once per viewer, not once per segment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from libs.shares import Status


def iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def refusal(status: Status, record: dict[str, Any] | None) -> tuple[int, str] | None:
    """(HTTP status, message for the agency) when the link must not play; None while it is live."""
    if status == "live":
        return None
    if status == "unknown" or record is None:
        return 403, "This link is not valid (unknown or altered share). Ask the control room for a new link."
    if status == "revoked":
        when = iso(record["ended_at"]) if record.get("ended_at") else "an earlier time"
        return 410, f"This share was revoked by the control room at {when}. Ask the control room for a new link."
    return 410, f"This share expired at {iso(record['expires_at'])}. Ask the control room for a new link."


@dataclass
class ViewerSessions:
    """A viewer = (share, client address); requests within `idle_s` of each other are one session."""

    idle_s: float
    _last_seen: dict[tuple[str, str], float] = field(default_factory=dict)

    def seen(self, share_id: str, client: str, now_s: float) -> bool:
        """Records a request; True when it opens a new viewing session."""
        key = (share_id, client)
        previous = self._last_seen.get(key)
        self._last_seen[key] = now_s
        if len(self._last_seen) > 10_000:  # bounded: forget sessions long idle
            self._last_seen = {k: t for k, t in self._last_seen.items() if now_s - t < self.idle_s}
        return previous is None or now_s - previous >= self.idle_s
