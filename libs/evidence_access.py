"""Who may fetch which evidence video, audited first: shared by `cctv evidence` (through the clip
writer's EvidenceDesk) and the console's clip player.

Two variants of every clip are stored (libs/evidence_store.py layout):
  masked   <alert_id>/masked/segment-NNN.mp4, listed in release.json (signed): faces, heads and plates
           pixelated (libs/video_masking.py). What operators play and what is released by default.
  original <alert_id>/segment-NNN.mp4, listed in manifest.json (signed): the evidence itself, unmasked.
           Only supervisors and admins may fetch it, and only with a reason (e.g. a case number).
Every fetch, allowed or refused, is a record on cctv.audit.v1 before any byte is handed out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from libs.evidence_audit import audit_event
from libs.evidence_store import EvidenceStore

HOLD_ROLES = frozenset({"supervisor", "admin"})
DOWNLOAD_ROLES = frozenset({"operator", "supervisor", "admin", "investigator"})
ORIGINAL_ROLES = frozenset({"supervisor", "admin"})
RELEASE = "release.json"
RELEASE_SIGNATURE = "release.sig"
MASKED_PREFIX = "masked/"

Variant = Literal["masked", "original"]


class NotFound(LookupError):
    """No clip is stored for this alert id."""


class NotReady(LookupError):
    """The clip exists but its masked copy has not been made yet."""


class Audit(Protocol):
    def record(self, event: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Actor:
    name: str
    roles: frozenset[str]
    client: str | None = None


class EvidenceAccess:
    def __init__(self, store: EvidenceStore, audit: Audit) -> None:
        self.store, self.audit = store, audit

    def _manifest(self, alert_id: str) -> dict[str, Any]:
        manifest = self.store.manifest(alert_id)
        if manifest is None:
            raise NotFound(f"no evidence clip stored for alert {alert_id}")
        return manifest

    def masked_manifest(self, alert_id: str) -> dict[str, Any] | None:
        """The masked copy's signed manifest, or None while it is not made."""
        data = self.store.get(self.store.key(alert_id, RELEASE))
        return json.loads(data) if data is not None else None

    def _refuse(self, actor: Actor, action: str, alert_id: str, camera_id: str | None, why: str) -> PermissionError:
        self.audit.record(
            audit_event(
                actor.name,
                action,
                allowed=False,
                alert_id=alert_id,
                camera_id=camera_id,
                client=actor.client,
                detail=why,
            )
        )
        return PermissionError(why)

    def _downloadable(self, alert_id: str, actor: Actor, action: str = "evidence.download") -> dict[str, Any]:
        """The clip's manifest when `actor` may fetch (frames of) it; a refusal (audited) otherwise."""
        manifest = self._manifest(alert_id)
        if not actor.roles & DOWNLOAD_ROLES:
            raise self._refuse(
                actor,
                action,
                alert_id,
                manifest["camera_id"],
                f"downloading evidence needs one of the roles {sorted(DOWNLOAD_ROLES)}",
            )
        return manifest

    def authorise(
        self,
        alert_id: str,
        actor: Actor,
        variant: Variant = "masked",
        reason: str = "",
        action: str = "evidence.download",
        audit: bool = True,
    ) -> list[dict[str, Any]]:
        """The objects (key, sha256, size, start_us, end_us) of the clip's `variant` that `actor` may
        fetch, after the fetch is audited (`audit=False` for the follow-up range requests of one playback
        that was audited already). PermissionError (audited) for an actor without the role or, for the
        original, without a reason; NotFound / NotReady when there is nothing to fetch yet."""
        manifest = self._downloadable(alert_id, actor, action)
        camera_id = manifest["camera_id"]
        if variant == "original":
            if not actor.roles & ORIGINAL_ROLES:
                raise self._refuse(
                    actor,
                    action,
                    alert_id,
                    camera_id,
                    f"the unmasked original needs one of the roles {sorted(ORIGINAL_ROLES)}; others get the masked copy",
                )
            if not reason.strip():
                raise self._refuse(
                    actor, action, alert_id, camera_id, "the unmasked original needs a reason (e.g. the case number)"
                )
            objects: list[dict[str, Any]] = manifest["objects"]
        else:
            release = self.masked_manifest(alert_id)
            if release is None:
                raise NotReady(
                    f"the masked copy of alert {alert_id} is not made yet (the clip writer makes it after the clip; "
                    f"`cctv evidence export {alert_id}` makes it now)"
                )
            objects = release["objects"]
        if audit:
            keys = " ".join(item["key"] for item in objects)
            self.audit.record(
                audit_event(
                    actor.name,
                    action,
                    allowed=True,
                    alert_id=alert_id,
                    camera_id=camera_id,
                    client=actor.client,
                    detail=f"{variant}: {keys}" + (f"; reason: {reason.strip()}" if reason.strip() else ""),
                )
            )
        return objects
