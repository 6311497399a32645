"""The gateway's decisions, free of Kafka and HTTP: what a link answers (unmasked only while the agency
may still have it), which requests open a viewing session (audited once per viewer, not once per
segment), and which video partitions hold the shared cameras."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from libs.kafka import key_partition
from libs.shares import Status
from services.alert_router.routing import RoutingConfigError, RoutingTableLoader


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


UNMASKED_WITHDRAWN = (
    "This share is unmasked, and the routing entry of its agency no longer allows unmasked video. "
    "Ask the control room for a masked share."
)


def releasable(share: dict[str, Any], unmasked_allowed: Callable[[str], bool]) -> bool:
    """A masked share plays; an unmasked one only while its agency may still receive unmasked video."""
    return bool(share["masked"]) or unmasked_allowed(share["agency"])


class UnmaskedPolicy:
    """Whether an agency may still receive unmasked video: its entry in the dispatcher's routing file
    (re-read when the file changes) says `unmasked: true`. Without a file the console's check when the
    share was made stands. An unreadable or invalid file at start raises RoutingConfigError."""

    def __init__(self, routes_file: Path | None) -> None:
        self.routes = RoutingTableLoader(routes_file) if routes_file is not None else None

    def __call__(self, agency: str) -> bool:
        if self.routes is None:
            return True
        try:
            self.routes.reload_if_changed()
        except RoutingConfigError:
            pass  # the previous table stays in force; the loader logged why
        entry = self.routes.table.endpoints.get(agency)
        return bool(entry and entry.unmasked)


def partitions_of(cameras: frozenset[str], partitions: int) -> frozenset[int]:
    """The video partitions holding the packets of `cameras` (keyed by camera id): all the gateway reads."""
    return frozenset(key_partition(camera.encode(), partitions) for camera in cameras)


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
