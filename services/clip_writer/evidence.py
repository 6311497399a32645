"""Evidence operations of the clip writer (retention) and `cctv evidence`: verify, hold, release,
authorised download, retention sweep. Each audited action writes its audit record first and acts only
once the record is acknowledged. Who may fetch which variant (masked copy / original) is decided in
libs/evidence_access.py, which the console's clip player shares.

    desk = EvidenceDesk(store, audit, public_key)
    links = desk.download_links(alert_id, Actor("kim", frozenset({"operator"}), "10.0.0.7"))
    # -> [{"key", "url", "size", "sha256", "expires_in_s"}] of the masked copy; PermissionError if not allowed

The URLs are S3 presigned GETs (default 5 minutes); the bucket stays private.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from libs.evidence_access import (
    HOLD_ROLES,
    RELEASE,
    RELEASE_SIGNATURE,
    Actor,
    EvidenceAccess,
    NotFound,
    Variant,
)
from libs.evidence_audit import AuditLog, audit_event
from libs.evidence_store import MANIFEST, SIGNATURE, EvidenceStore
from services.clip_writer.core import deletion_due
from services.clip_writer.manifest import Verification, verify_clip
from services.clip_writer.remux import frame_jpeg

__all__ = ["Actor", "EvidenceDesk", "NotFound"]

log = logging.getLogger(__name__)


class EvidenceDesk(EvidenceAccess):
    def __init__(self, store: EvidenceStore, audit: AuditLog, public_key: Ed25519PublicKey | None = None) -> None:
        super().__init__(store, audit)
        self.public_key = public_key

    def verify(self, alert_id: str) -> Verification:
        """The clip and, once made, its masked copy: both manifests re-hashed and their signatures checked."""
        if self.public_key is None:
            raise ValueError("no verification key configured (CCTV_EVIDENCE__VERIFY_KEY or the signing key)")
        result = verify_clip(
            alert_id,
            self.store.get(self.store.key(alert_id, MANIFEST)),
            self.store.get(self.store.key(alert_id, SIGNATURE)),
            self.public_key,
            self.store.get,
        )
        release = self.store.get(self.store.key(alert_id, RELEASE))
        if release is None:
            return result
        masked = verify_clip(
            alert_id,
            release,
            self.store.get(self.store.key(alert_id, RELEASE_SIGNATURE)),
            self.public_key,
            self.store.get,
        )
        return Verification(
            alert_id,
            result.problems + [f"masked copy: {p}" for p in masked.problems],
            result.checked + [f"masked copy: {c}" for c in masked.checked],
        )

    def hold(self, alert_id: str, actor: Actor, reason: str) -> dict[str, Any]:
        manifest = self._manifest(alert_id)
        if not actor.roles & HOLD_ROLES:
            raise self._refuse(
                actor,
                "evidence.hold",
                alert_id,
                manifest["camera_id"],
                f"legal hold needs one of the roles {sorted(HOLD_ROLES)}",
            )
        if not reason.strip():
            raise ValueError("a legal hold needs a reason (e.g. the case number)")
        hold = {"by": actor.name, "reason": reason, "since_ms": int(time.time() * 1000)}
        self.audit.record(
            audit_event(
                actor.name,
                "evidence.hold",
                allowed=True,
                alert_id=alert_id,
                camera_id=manifest["camera_id"],
                client=actor.client,
                detail=reason,
            )
        )
        self.store.set_hold(alert_id, hold)
        return hold

    def release(self, alert_id: str, actor: Actor, reason: str = "") -> None:
        manifest = self._manifest(alert_id)
        if not actor.roles & HOLD_ROLES:
            raise self._refuse(
                actor,
                "evidence.release",
                alert_id,
                manifest["camera_id"],
                f"releasing a legal hold needs one of the roles {sorted(HOLD_ROLES)}",
            )
        self.audit.record(
            audit_event(
                actor.name,
                "evidence.release",
                allowed=True,
                alert_id=alert_id,
                camera_id=manifest["camera_id"],
                client=actor.client,
                detail=reason or None,
            )
        )
        self.store.clear_hold(alert_id)

    def download_links(
        self, alert_id: str, actor: Actor, ttl_s: int | None = None, variant: Variant = "masked", reason: str = ""
    ) -> list[dict[str, Any]]:
        """Presigned URLs of the clip's objects (the masked copy unless `variant` is "original"), handed out
        only after the download is audited."""
        objects = self.authorise(alert_id, actor, variant, reason)
        ttl = ttl_s or self.store.settings.presign_ttl_s
        return [
            {
                "key": item["key"],
                "url": self.store.presigned_url(item["key"], ttl),
                "size": item["size"],
                "sha256": item["sha256"],
                "expires_in_s": ttl,
            }
            for item in objects
        ]

    def snapshot(self, alert_id: str, capture_time_us: int, actor: Actor) -> bytes:
        """The frame at `capture_time_us` (e.g. the alert's detected_at) from the clip, as JPEG (audited)."""
        manifest = self._downloadable(alert_id, actor)
        item = next((o for o in manifest["objects"] if o["start_us"] <= capture_time_us < o["end_us"]), None)
        if item is None:
            raise NotFound(f"the clip of alert {alert_id} does not cover {capture_time_us} µs")
        data = self.store.get(item["key"])
        if data is None:
            raise NotFound(f"{item['key']} is missing from the bucket (run `cctv evidence verify {alert_id}`)")
        self.audit.record(
            audit_event(
                actor.name,
                "evidence.download",
                allowed=True,
                alert_id=alert_id,
                camera_id=manifest["camera_id"],
                client=actor.client,
                detail=f"frame at {capture_time_us} from {item['key']}",
            )
        )
        return frame_jpeg(data, (capture_time_us - item["start_us"]) / 1e6)

    def listing(self, alert_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        rows = []
        for alert_id in alert_ids if alert_ids is not None else self.store.alert_ids():
            manifest = self.store.manifest(alert_id)
            if manifest is None:
                continue
            hold = self.store.hold(alert_id)
            rows.append({"manifest": manifest, "hold": hold})
        return rows

    def sweep(self, now_us: int | None = None, actor: str = "clip-writer") -> list[str]:
        """Delete every clip past its retention that is not on hold; returns the deleted alert ids."""
        now_us = now_us if now_us is not None else time.time_ns() // 1000
        deleted = []
        for alert_id in list(self.store.alert_ids()):
            manifest = self.store.manifest(alert_id)
            if manifest is None or not deletion_due(manifest, self.store.hold(alert_id) is not None, now_us):
                continue
            keys = [item["key"] for item in manifest["objects"]]
            # Audited first: a crash between the two leaves an audited deletion that the next sweep finishes.
            self.audit.record(
                audit_event(
                    actor,
                    "evidence.delete",
                    allowed=True,
                    alert_id=alert_id,
                    camera_id=manifest["camera_id"],
                    detail=f"retention ended; objects {' '.join(keys)}",
                )
            )
            self.store.delete_clip(alert_id)
            deleted.append(alert_id)
            log.info("evidence of alert %s deleted (retention ended)", alert_id)
        return deleted
