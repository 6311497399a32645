"""The release and access ledger (cctv.audit.v1) read for auditors and the regulator: filters (agency or
actor, camera, act, period), CSV export, and reading the topic from a moment to its current end. Shared
by `cctv audit` (cctv/ledger.py) and the console's ledger view (services/console/routes/ledger.py).
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from libs.serde import AvroSerde
from libs.settings import KafkaSettings

CSV_COLUMNS = (
    "time",
    "actor",
    "role",
    "what",
    "outcome",
    "camera_id",
    "alert_id",
    "client_address",
    "detail",
    "console_instance",
    "audit_id",
)
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_moment(text: str, now_s: float | None = None) -> int:
    """Epoch milliseconds of an ISO 8601 time (UTC when no zone is given) or of a duration ago ("30m",
    "24h", "7d"). Raises ValueError with the accepted forms."""
    match = _DURATION.match(text.strip())
    if match:
        now = time.time() if now_s is None else now_s
        return int((now - int(match.group(1)) * _UNIT_S[match.group(2)]) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2026-11-30T08:00) nor a duration ago (30m, 24h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def select(
    records: Iterable[dict[str, Any]],
    *,
    agency: str | None = None,
    camera: str | None = None,
    what: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[dict[str, Any]]:
    """Records matching every given filter, oldest first, each once (an expiry noticed by several gateway
    replicas carries one audit id). `agency` matches the actor (a webhook's or share's destination, a
    console user), `what` is a prefix ("webhook" = every webhook release, "share" = every share act)."""
    unique = {r["audit_id"]: r for r in records}
    chosen = [
        r
        for r in unique.values()
        if (agency is None or r["actor"] == agency)
        and (camera is None or r.get("camera_id") == camera)
        and (what is None or r["what"].startswith(what))
        and (since_ms is None or r["timestamp"] >= since_ms)
        and (until_ms is None or r["timestamp"] < until_ms)
    ]
    return sorted(chosen, key=lambda r: (r["timestamp"], r["audit_id"]))


def iso_ms(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_csv(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for record in records:
        writer.writerow({**record, "time": iso_ms(record["timestamp"])})
        count += 1
    return count


def read_records(
    kafka: KafkaSettings,
    serde: AvroSerde,
    since_ms: int | None,
    timeout_s: float = 30.0,
    purpose: str = "audit-ledger",
) -> tuple[list[dict[str, Any]], int]:
    """(every AuditRecord from `since_ms` (by record time; all when None) to the topic's current end,
    how many records could not be decoded)."""
    from libs.kafka import read_since
    from libs.topics import AUDIT

    return read_since(kafka, serde, AUDIT, "AuditRecord", since_ms, purpose, timeout_s)
