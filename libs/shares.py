"""Live-video shares, shared by the console (creates, lists, revokes) and the share gateway (serves, records
expiry): the record on cctv.shares.v1, the link's token, and the book of every share's latest state.

A share is one camera released to one agency for one purpose until a deadline. The link's token is the
credential (no login): it signs the share id with the share key, so a forged or altered link is refused
without a lookup, and revocation and expiry are decided by the share's state, which every replica reads
from the compacted topic.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError
from itsdangerous import BadSignature, URLSafeSerializer

from libs.kafka import assign_from_beginning, decode_latest, make_reader
from libs.serde import AvroSerde
from libs.settings import KafkaSettings

log = logging.getLogger(__name__)

SCHEMA = "ShareRecord"
_TOKEN_SALT = "cctv-live-share"
Status = Literal["live", "revoked", "expired", "unknown"]


def new_share(
    camera_id: str,
    agency: str,
    purpose: str,
    *,
    created_by: str,
    lifetime_s: float,
    masked: bool,
    alert_id: str | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """A new ACTIVE ShareRecord; raises ValueError for an empty purpose or a lifetime that is not positive."""
    if not purpose.strip():
        raise ValueError("a share needs a purpose (privacy law: release is limited in purpose)")
    if lifetime_s <= 0:
        raise ValueError("a share's lifetime must be positive")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return {
        "share_id": str(uuid.uuid4()),
        "camera_id": camera_id,
        "agency": agency,
        "purpose": purpose.strip(),
        "alert_id": alert_id,
        "created_by": created_by,
        "created_at": now,
        "expires_at": now + int(lifetime_s * 1000),
        "masked": masked,
        "state": "ACTIVE",
        "ended_by": None,
        "ended_at": None,
    }


def ended(record: dict[str, Any], state: Literal["REVOKED", "EXPIRED"], by: str, now_ms: int) -> dict[str, Any]:
    return record | {"state": state, "ended_by": by, "ended_at": now_ms}


def status_of(record: dict[str, Any] | None, now_ms: int) -> Status:
    if record is None:
        return "unknown"
    if record["state"] == "REVOKED":
        return "revoked"
    if record["state"] == "EXPIRED" or now_ms >= record["expires_at"]:
        return "expired"
    return "live"


def expiry_audit_id(share_id: str) -> str:
    """The same id from every gateway replica that notices the expiry: the ledger keeps one record."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cctv-share-expired:{share_id}"))


class ShareTokens:
    """Signs share ids into link tokens and reads them back (the key is a Secret shared by the console
    and the gateway)."""

    def __init__(self, key: str) -> None:
        if len(key) < 32:
            raise ValueError("the share key is shorter than 32 characters; use a long random key")
        self._serializer = URLSafeSerializer(key, salt=_TOKEN_SALT)

    def token(self, share_id: str) -> str:
        return str(self._serializer.dumps(share_id))

    def share_id(self, token: str) -> str | None:
        """The share id a genuine token signs; None for a forged or damaged one."""
        try:
            value = self._serializer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None


@dataclass
class ShareBook:
    """Latest record of every share (from cctv.shares.v1), thread-safe."""

    def __post_init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.caught_up = False

    def apply(self, share_id: str, record: dict[str, Any] | None) -> None:
        with self._lock:
            if record is None:
                self._records.pop(share_id, None)
            else:
                self._records[share_id] = record

    def get(self, share_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._records.get(share_id)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records.values())

    def live(self, now_ms: int) -> list[dict[str, Any]]:
        return [r for r in self.all() if status_of(r, now_ms) == "live"]

    def expired_unrecorded(self, now_ms: int) -> list[dict[str, Any]]:
        """ACTIVE shares past their deadline: their expiry is still to be recorded."""
        return [r for r in self.all() if r["state"] == "ACTIVE" and now_ms >= r["expires_at"]]


class ShareFollower:
    """Keeps a ShareBook up to date from cctv.shares.v1 in a thread: the whole topic at start (`caught_up`
    once its end is reached), then every new record within a poll (0.2 s)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        serde: AvroSerde,
        topic: str,
        book: ShareBook,
        purpose: str,
        on_change: Callable[[dict[str, Any] | None], None] = lambda _record: None,
    ) -> None:
        self.kafka, self.serde, self.topic, self.book, self.on_change = kafka, serde, topic, book, on_change
        self.purpose = purpose  # names its (never joined) group: within the service's ACL prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="share-follower", daemon=True)

    def start(self) -> ShareFollower:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _skip(self, message: Any, error: Exception) -> None:
        log.warning(
            "%s[%d]@%d: undecodable share record skipped: %s", self.topic, message.partition(), message.offset(), error
        )

    def _run(self) -> None:
        consumer = make_reader(self.kafka, self.purpose)
        try:
            catch_up = assign_from_beginning(consumer, self.topic)
            while not self._stop.is_set():
                message = consumer.poll(0.2)
                error = message.error() if message is not None else None
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    log.warning("share follower: %s", error.str())
                decoded = decode_latest(self.serde, self.topic, SCHEMA, message, self._skip) if message else None
                if decoded is not None:
                    key, value = decoded
                    self.book.apply(key, value)
                    self.on_change(value)
                if not self.book.caught_up:
                    catch_up.reached()
                    if not catch_up.pending:
                        self.book.caught_up = True
                        log.info("shares read to the end of %s: %d known", self.topic, len(self.book.all()))
        except Exception:  # a dead follower must show in readiness, not silently serve stale state
            log.exception("share follower stopped")
            self.book.caught_up = False
            raise
        finally:
            consumer.close()
