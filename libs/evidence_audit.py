"""Audit records for evidence: every hold, release, download and deletion goes on cctv.audit.v1.

Records are the ledger's one layout (libs/audit.py, AuditRecord). Key: alert_id, else camera_id, else
actor. Acts written here (`what`): evidence.hold, evidence.release, evidence.download, evidence.delete.

`AuditLog.record` returns only once the broker acknowledged the record (acks=all), so an action that
must be audited (a download link handed out) is never done unaudited.
"""

from __future__ import annotations

import socket
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from libs.audit import SCHEMA, audit_record
from libs.serde import AvroSerde
from libs.topics import AUDIT

INSTANCE = f"evidence@{socket.gethostname()}"


def audit_event(
    actor: str,
    action: str,
    *,
    allowed: bool,
    alert_id: str | None = None,
    camera_id: str | None = None,
    client: str | None = None,
    detail: str | None = None,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """One AuditRecord for an evidence action (the detail is redacted and size-capped)."""
    return audit_record(
        actor,
        action,
        allowed=allowed,
        instance=INSTANCE,
        camera_id=camera_id,
        alert_id=alert_id,
        detail=detail,
        client_address=client,
        at_ms=at_ms,
    )


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
            raise AuditFailed(f"audit record {event['what']} not acknowledged: {'; '.join(errors) or 'timeout'}")
