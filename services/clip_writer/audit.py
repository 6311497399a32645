"""Audit records for evidence: every hold, release, download and deletion goes on cctv.audit.v1.

Record layout (schemas/audit_event.avsc, AuditEvent): actor, action, camera_id, alert_id,
outcome (ALLOWED|DENIED), client, detail, timestamp (ms). Key: alert_id, else camera_id, else actor.
Actions written here: evidence.hold, evidence.release, evidence.download, evidence.delete.

`AuditLog.record` returns only once the broker acknowledged the record (acks=all), so an action that
must be audited (a download link handed out) is never done unaudited.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from libs.redact import redact_text
from libs.serde import AvroSerde
from libs.topics import AUDIT

SCHEMA = "AuditEvent"
_DETAIL_LIMIT = 4000


def audit_event(actor: str, action: str, *, allowed: bool, alert_id: str | None = None,
                camera_id: str | None = None, client: str | None = None, detail: str | None = None,
                at_ms: int | None = None) -> dict[str, Any]:
    """One AuditEvent record; the detail is redacted (no credentials) and size-capped."""
    if not actor or not action:
        raise ValueError("an audit record needs an actor and an action")
    return {
        "actor": actor, "action": action, "camera_id": camera_id, "alert_id": alert_id,
        "outcome": "ALLOWED" if allowed else "DENIED", "client": client,
        "detail": redact_text(detail)[:_DETAIL_LIMIT] if detail else None,
        "timestamp": at_ms if at_ms is not None else int(time.time() * 1000),
    }


class AuditFailed(Exception):
    """The audit record was not acknowledged: the audited action must not go ahead."""


class AuditLog:
    def __init__(self, producer: Producer, serde: AvroSerde, timeout_s: float = 15.0) -> None:
        self.producer, self.serde, self.timeout_s = producer, serde, timeout_s

    def record(self, event: dict[str, Any]) -> None:
        errors: list[str] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                errors.append(error.str())

        key = event["alert_id"] or event["camera_id"] or event["actor"]
        self.producer.produce(AUDIT, key=key, value=self.serde.serialize(AUDIT, SCHEMA, event), on_delivery=delivered)
        if self.producer.flush(self.timeout_s) or errors:
            raise AuditFailed(f"audit record {event['action']} not acknowledged: {'; '.join(errors) or 'timeout'}")
