"""The camera-controller's pure core: Camera resources <-> CameraConfig records, the live status that
is written back to each resource, and the pacing of those writes. Knows nothing of Kubernetes' API or
Kafka; the adapters in `kube.py` and `main.py` feed it plain dicts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from libs.cameras import CameraEntry

GROUP = "cctv-platform.io"
VERSION = "v1"
PLURAL = "cameras"
KIND = "Camera"

# CameraEntry field -> where it lives in a Camera resource. Kept beside the converter so a test can
# check that every field of the model has a home in the CRD and the converter fills it.
FIELD_PATHS: dict[str, str] = {
    "camera_id": "spec.cameraId (default: metadata.name)",
    "name": "spec.displayName",
    "site_id": "spec.siteId",
    "stream_url": "spec.streamUrl",
    "credentials_ref": "spec.credentialsSecretRef.key",
    "rtsp_transport": "spec.rtspTransport",
    "loop": "spec.loop",
    "realtime": "spec.realtime",
    "location": "spec.location",
    "tags": "spec.tags",
    "sampling": "spec.sampling",
    "zones": "spec.zones",
    "timezone": "spec.timezone",
    "enabled": "spec.enabled",
}


class InvalidCamera(ValueError):
    """A Camera that passed admission but cannot be published; `reason` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class CredentialPolicy:
    """Where camera credentials may come from: keys of one Secret that ingest mounts, in the platform's
    namespace. A Camera in another namespace cannot point ingest at credentials it does not own."""

    secret_name: str = ""
    namespace: str = ""


def camera_id_of(resource: dict[str, Any]) -> str:
    return str(resource.get("spec", {}).get("cameraId") or resource["metadata"]["name"])


def ref_of(resource: dict[str, Any]) -> str:
    meta = resource["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def check_credentials(
    spec: dict[str, Any], namespace: str, policy: CredentialPolicy, secret_keys: set[str] | None
) -> str | None:
    """The credentials_ref for ingest, after checking the Secret reference is allowed and resolvable.
    `secret_keys` are the keys of the referenced Secret (None: it does not exist or cannot be read)."""
    ref = spec.get("credentialsSecretRef")
    if not ref:
        return None
    if not policy.secret_name:
        raise InvalidCamera(
            "CredentialsNotConfigured",
            "credentialsSecretRef is set but the platform has no camera credentials Secret "
            "(chart value cameraCredentials.existingSecret)",
        )
    if ref["name"] != policy.secret_name or namespace != policy.namespace:
        raise InvalidCamera(
            "CredentialsSecretNotAllowed",
            f"credentials must be keys of Secret {policy.secret_name!r} in namespace "
            f"{policy.namespace!r} (the one ingest mounts), not {namespace}/{ref['name']}",
        )
    if secret_keys is None:
        raise InvalidCamera("CredentialsSecretMissing", f"Secret {namespace}/{ref['name']} was not found")
    if ref["key"] not in secret_keys:
        raise InvalidCamera("CredentialsKeyMissing", f"Secret {namespace}/{ref['name']} has no key {ref['key']!r}")
    return str(ref["key"])


def to_entry(resource: dict[str, Any], credentials_ref: str | None = None) -> CameraEntry:
    """The CameraEntry a Camera stands for; raises InvalidCamera with every problem found."""
    from cctv.inventory import validate_entry

    spec = resource.get("spec") or {}
    data: dict[str, Any] = {"camera_id": camera_id_of(resource), "stream_url": spec.get("streamUrl", "")}
    simple = {
        "displayName": "name",
        "siteId": "site_id",
        "rtspTransport": "rtsp_transport",
        "loop": "loop",
        "realtime": "realtime",
        "location": "location",
        "tags": "tags",
        "zones": "zones",
        "timezone": "timezone",
        "enabled": "enabled",
    }
    for key, target in simple.items():
        if key in spec:
            data[target] = spec[key]
    if "sampling" in spec:
        sampling = spec["sampling"]
        data["sampling"] = {
            "mode": sampling.get("mode", "keyframes"),
            "fps": sampling.get("fps"),
            "heartbeat_s": sampling.get("heartbeatSeconds", 30.0),
        }
    if credentials_ref:
        data["credentials_ref"] = credentials_ref
    entry, error = validate_entry(data, 0)
    if error is not None or entry is None:
        raise InvalidCamera("InvalidSpec", error.reason if error else "invalid camera")
    return entry


def from_entry(entry: CameraEntry, namespace: str, credentials_secret: str = "") -> dict[str, Any]:
    """A Camera manifest for an inventory entry (migrating a YAML/CSV inventory to resources)."""
    if entry.credentials_ref and not credentials_secret:
        raise ValueError(f"{entry.camera_id}: credentials_ref needs the name of the credentials Secret")
    name = k8s_name(entry.camera_id)
    spec: dict[str, Any] = {
        "streamUrl": entry.stream_url,
        "rtspTransport": entry.rtsp_transport,
        "loop": entry.loop,
        "realtime": entry.realtime,
        "tags": entry.tags,
        "timezone": entry.timezone,
        "enabled": entry.enabled,
        "sampling": {"mode": entry.sampling.mode, "heartbeatSeconds": entry.sampling.heartbeat_s},
        "zones": entry.zones,
    }
    if name != entry.camera_id:
        spec["cameraId"] = entry.camera_id
    if entry.name:
        spec["displayName"] = entry.name
    if entry.site_id:
        spec["siteId"] = entry.site_id
    if entry.sampling.fps is not None:
        spec["sampling"]["fps"] = entry.sampling.fps
    if entry.location is not None:
        spec["location"] = entry.location.model_dump()
    if entry.credentials_ref:
        spec["credentialsSecretRef"] = {"name": credentials_secret, "key": entry.credentials_ref}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def k8s_name(camera_id: str) -> str:
    """A DNS-1123 name for a camera id (lowercase; anything else becomes '-')."""
    out = "".join(c if c.isalnum() else "-" for c in camera_id.lower()).strip("-")
    return out[:253] or "camera"


def fingerprint(entry: CameraEntry) -> str:
    """What the record says, without its publication time: equal fingerprints need no republish."""
    return json.dumps(entry.to_record(0), sort_keys=True)


def claim_ids(resources: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """One owner per camera id: the oldest resource (then namespace/name) wins. Returns the winners by
    camera id and, for each losing resource ref, the ref that owns its id."""
    ordered = sorted(resources, key=lambda r: (r["metadata"].get("creationTimestamp") or "", ref_of(r)))
    owners: dict[str, dict[str, Any]] = {}
    losers: dict[str, str] = {}
    for resource in ordered:
        camera_id = camera_id_of(resource)
        if camera_id in owners:
            losers[ref_of(resource)] = ref_of(owners[camera_id])
        else:
            owners[camera_id] = resource
    return owners, losers


def plan_resync(
    desired: dict[str, CameraEntry], on_topic: dict[str, CameraEntry]
) -> tuple[list[CameraEntry], list[str]]:
    """Make the topic equal the cluster: publish what differs, tombstone what the cluster lacks."""
    publish = [
        e for cid, e in sorted(desired.items()) if cid not in on_topic or fingerprint(on_topic[cid]) != fingerprint(e)
    ]
    remove = sorted(set(on_topic) - set(desired))
    return publish, remove


# ---- conditions ----------------------------------------------------------------------------------------


def iso(ms: float | None = None) -> str:
    at = time.time() if ms is None else ms / 1000
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]], kind: str, ok: bool, reason: str, message: str, generation: int | None
) -> list[dict[str, Any]]:
    """Conditions with `kind` set; lastTransitionTime only moves when the status flips."""
    status = "True" if ok else "False"
    previous = next((c for c in conditions if c.get("type") == kind), None)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else iso()
    updated = {"type": kind, "status": status, "reason": reason, "message": message[:1024], "lastTransitionTime": since}
    if generation is not None:
        updated["observedGeneration"] = generation
    return [c for c in conditions if c.get("type") != kind] + [updated]


def _epoch_ms(value: Any, per_second: int) -> float:
    """Avro timestamps arrive as ints (micros or millis) or datetimes, depending on the decoder."""
    if isinstance(value, datetime):
        return value.timestamp() * 1000
    return float(value) * 1000 / per_second


# ---- live status -----------------------------------------------------------------------------------------


@dataclass
class CameraView:
    """What the controller knows of one camera from the pipeline's topics."""

    state: str | None = None
    reason: str | None = None
    fps: float | None = None
    status_ms: int | None = None
    activity: str | None = None
    activity_since_ms: float | None = None
    last_alert: dict[str, Any] | None = None

    def patch(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.state is not None:
            out |= {
                "state": self.state,
                "reason": self.reason or "",
                "fps": round(self.fps, 2) if self.fps is not None else None,
            }
            if self.status_ms:
                out["lastStatusTime"] = iso(self.status_ms)
        if self.activity is not None:
            out["activity"] = self.activity
            if self.activity_since_ms:
                out["activitySince"] = iso(self.activity_since_ms)
        if self.last_alert is not None:
            out["lastAlert"] = self.last_alert
        return out


@dataclass
class StatusBoard:
    """Latest pipeline facts per camera id and which cameras' resources need a status write.

    A change of state (ONLINE -> FAILED, a new alert) is urgent and written as soon as the rate limit
    allows; fps/motion drift of an unchanged state is written at most every `refresh_s` per camera.
    """

    refresh_s: float = 60.0
    views: dict[str, CameraView] = field(default_factory=dict)
    urgent: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    written: dict[str, tuple[float, str]] = field(default_factory=dict)  # camera -> (when, state-ish key)

    def _view(self, camera_id: str) -> CameraView:
        return self.views.setdefault(camera_id, CameraView())

    def on_status(self, record: dict[str, Any]) -> None:
        view = self._view(record["camera_id"])
        if view.status_ms is not None and record["timestamp"] < view.status_ms:
            return
        changed = view.state != record["state"]
        view.state, view.reason, view.fps = record["state"], record.get("reason"), record.get("fps")
        view.status_ms = record["timestamp"]
        if changed:
            self.urgent[record["camera_id"]] = None

    def on_activity(self, record: dict[str, Any]) -> None:
        view = self._view(record["camera_id"])
        changed = view.activity != record["state"]
        since = record.get("since")  # timestamp-micros
        view.activity = record["state"]
        view.activity_since_ms = _epoch_ms(since, per_second=1_000_000) if since is not None else None
        if changed:
            self.urgent[record["camera_id"]] = None

    def on_alert(self, record: dict[str, Any]) -> None:
        if record.get("kind") != "NEW":
            return
        view = self._view(record["camera_id"])
        view.last_alert = {
            "time": iso(_epoch_ms(record["detected_at"], per_second=1_000_000)),
            "eventType": record["event_type"],
            "severity": record["severity"],
            "alertId": record["alert_id"],
        }
        self.urgent[record["camera_id"]] = None

    def due(self, now: float, known: set[str]) -> list[str]:
        """Cameras (with a resource) whose status should be written now, urgent ones first."""
        out = [c for c in self.urgent if c in known]
        for camera_id in known:
            if camera_id in self.urgent or camera_id not in self.views:
                continue
            last = self.written.get(camera_id)
            if last is None or now - last[0] >= self.refresh_s:
                out.append(camera_id)
        return out

    def mark_written(self, camera_id: str, now: float) -> None:
        self.urgent.pop(camera_id, None)
        view = self.views.get(camera_id)
        self.written[camera_id] = (now, (view.state or "") if view else "")

    def forget(self, camera_id: str) -> None:
        self.urgent.pop(camera_id, None)
        self.written.pop(camera_id, None)


@dataclass
class TokenBucket:
    """At most `rate` writes per second on average, `burst` at once: 3,609 cameras changing together
    (a network outage) reach the API server as a steady trickle instead of a flood."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# ---- leader election -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    renew_time: float | None  # seconds since the epoch
    duration_s: float


def lease_action(lease: LeaseState | None, me: str, now: float) -> str:
    """'create' (no Lease yet), 'renew' (mine), 'take' (expired or released) or 'wait' (someone else's)."""
    if lease is None:
        return "create"
    if lease.holder == me:
        return "renew"
    if not lease.holder or lease.renew_time is None or now - lease.renew_time > lease.duration_s:
        return "take"
    return "wait"
