"""camera-controller: Camera resources (cameras.cctv-platform.io) -> the inventory topic, and the
pipeline's view of each camera -> the resource's status.

Only the Lease holder writes (to Kafka and to the API server); standbys keep following the status
topics so a takeover starts with a warm view. On becoming leader the controller lists every Camera
and makes cctv.cameras.v1 equal to the cluster in one transaction (tombstones for cameras the cluster
no longer has), then applies each watch event as its own transaction.

Consumes (pipeline_status.py): cctv.camera-status.v1, cctv.camera-activity.v1, cctv.alerts.v1.
Produces: cctv.cameras.v1.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from prometheus_client import Counter, Gauge
from urllib3.exceptions import HTTPError

from cctv.inventory import publish, read_inventory
from libs.cameras import CameraEntry
from libs.service import ServiceRuntime, start_service
from services.camera_controller.core import (
    CredentialPolicy,
    InvalidCamera,
    camera_id_of,
    check_credentials,
    claim_ids,
    fingerprint,
    iso,
    plan_resync,
    ref_of,
    set_condition,
    to_entry,
)
from services.camera_controller.kube import ApiException, CameraApi, LeaseElector, api_client
from services.camera_controller.pipeline_status import PipelineStatus
from services.camera_controller.settings import ControllerSettings

__all__ = ["CameraController", "ControllerSettings", "main"]

log = logging.getLogger(__name__)
SERVICE = "camera-controller"

PUBLISHED = Counter("cctv_camera_controller_published_total", "Inventory records published", ["kind"])
INVALID = Counter("cctv_camera_controller_invalid_total", "Camera resources refused", ["reason"])
STATUS_WRITES = Counter("cctv_camera_controller_status_writes_total", "Status patches sent to the API server")
LEADER = Gauge("cctv_camera_controller_leader", "1 while this replica holds the Lease")
CAMERAS_KNOWN = Gauge("cctv_camera_controller_cameras", "Camera resources published by this controller")


class CameraController:
    def __init__(self, runtime: ServiceRuntime[ControllerSettings]) -> None:
        self.runtime = runtime
        self.config = runtime.settings.controller
        self.kafka = runtime.settings.kafka
        api = api_client(self.config.kubeconfig)
        self.cameras = CameraApi(api, self.config.namespace)
        self.elector = LeaseElector(
            api,
            self.config.platform_namespace,
            self.config.lease_name,
            self.config.identity,
            self.config.lease_duration_s,
            self.config.renew_every_s,
        )
        self.policy = CredentialPolicy(self.config.credentials_secret, self.config.platform_namespace)
        self.status = PipelineStatus(runtime, SERVICE)
        self.resources: dict[str, dict[str, Any]] = {}  # ref -> resource
        self.owner_of: dict[str, str] = {}  # camera id -> ref of the resource that owns it
        self.published: dict[str, str] = {}  # camera id -> fingerprint on the topic
        self.handled: dict[str, tuple[int, str]] = {}  # ref -> (generation, outcome) already reported
        self.judged: dict[str, tuple[int, str]] = {}  # ref -> (generation, annotations) already judged

    # ---- reconciling one resource ---------------------------------------------------------------------------

    def _entry_for(self, resource: dict[str, Any]) -> CameraEntry:
        spec, namespace = resource.get("spec") or {}, resource["metadata"]["namespace"]
        ref = spec.get("credentialsSecretRef")
        keys = None
        if ref and ref.get("name") == self.policy.secret_name and namespace == self.policy.namespace:
            keys = self.cameras.secret_keys(namespace, ref["name"])
        return to_entry(resource, check_credentials(spec, namespace, self.policy, keys))

    def _judge(self, resource: dict[str, Any]) -> tuple[CameraEntry | None, InvalidCamera | None]:
        camera_id = camera_id_of(resource)
        owner = self.owner_of.get(camera_id)
        if owner is not None and owner != ref_of(resource):
            return None, InvalidCamera(
                "DuplicateCameraId", f"camera id {camera_id!r} already belongs to Camera {owner}"
            )
        try:
            return self._entry_for(resource), None
        except InvalidCamera as error:
            return None, error

    def _report(self, resource: dict[str, Any], entry: CameraEntry | None, error: InvalidCamera | None) -> None:
        """Condition (and an Event when the outcome changes) for this generation of the resource."""
        meta, ref = resource["metadata"], ref_of(resource)
        generation = meta.get("generation")
        outcome = error.reason if error else "Published"
        if self.handled.get(ref) == (generation, outcome):
            return
        self.handled[ref] = (generation, outcome)
        current = resource.get("status") or {}
        conditions = list(current.get("conditions") or [])
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if (
            current.get("observedGeneration") == generation
            and ready is not None
            and ready.get("reason") == outcome
            and (error is None or ready.get("message") == str(error)[:1024])
        ):
            return  # already says so (e.g. written before a restart): no write, no Event, no flood on resync
        if error is not None:
            INVALID.labels(error.reason).inc()
            log.warning("Camera %s refused: %s: %s", ref, error.reason, error)
            status = {
                "state": "INVALID",
                "reason": str(error)[:256],
                "observedGeneration": generation,
                "conditions": set_condition(conditions, "Ready", False, error.reason, str(error), generation),
            }
            self.cameras.event(resource, "Warning", error.reason, str(error), SERVICE)
        else:
            assert entry is not None
            status = {
                "cameraId": entry.camera_id,
                "credentialsRef": entry.credentials_ref or "",
                "publishedAt": iso(),
                "observedGeneration": generation,
                "conditions": set_condition(
                    conditions,
                    "Ready",
                    True,
                    "Published",
                    f"published to the inventory as {entry.camera_id}",
                    generation,
                ),
            }
            previous = (resource.get("status") or {}).get("state")
            if not entry.enabled:
                status |= {"state": "DISABLED", "reason": "spec.enabled is false"}
            elif previous in (None, "INVALID", "DISABLED"):
                status |= {"state": "PENDING", "reason": "waiting for ingest to report"}
            self.cameras.event(
                resource, "Normal", "Published", f"published to the inventory as {entry.camera_id}", SERVICE
            )
        self._patch(meta["namespace"], meta["name"], status)

    def _patch(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.cameras.patch_status(namespace, name, status)
            STATUS_WRITES.inc()
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile: nothing to report on
                raise

    def on_upsert(self, resource: dict[str, Any]) -> None:
        ref, camera_id = ref_of(resource), camera_id_of(resource)
        self.resources[ref] = resource
        # Status writes come back as MODIFIED events: judge again only when the spec (generation) or
        # the annotations changed (annotating a Camera asks for a fresh look, e.g. after a Secret fix).
        meta = resource["metadata"]
        key = (meta.get("generation"), json.dumps(meta.get("annotations") or {}, sort_keys=True))
        if self.judged.get(ref) == key:
            return
        self.judged[ref] = key
        self.owner_of.setdefault(camera_id, ref)
        entry, error = self._judge(resource)
        if entry is not None and self.published.get(camera_id) != fingerprint(entry):
            publish(self.kafka, self.runtime.serde, [entry])
            PUBLISHED.labels("camera").inc()
            self.published[camera_id] = fingerprint(entry)
            log.info("published camera %s from Camera %s", camera_id, ref)
        elif error is not None and self.owner_of.get(camera_id) == ref and camera_id in self.published:
            self._tombstone(camera_id, f"Camera {ref} became invalid")  # as a resync would: no half-valid cameras
        self._report(resource, entry, error)
        CAMERAS_KNOWN.set(len(self.published))

    def on_delete(self, resource: dict[str, Any]) -> None:
        ref, camera_id = ref_of(resource), camera_id_of(resource)
        self.resources.pop(ref, None)
        self.handled.pop(ref, None)
        self.judged.pop(ref, None)
        if self.owner_of.get(camera_id) != ref:
            return
        del self.owner_of[camera_id]
        heir = next(
            (
                r
                for r in sorted(self.resources.values(), key=lambda r: r["metadata"].get("creationTimestamp") or "")
                if camera_id_of(r) == camera_id
            ),
            None,
        )
        if heir is not None:  # a duplicate waited for this id: it takes over
            self.handled.pop(ref_of(heir), None)
            self.judged.pop(ref_of(heir), None)
            self.on_upsert(heir)
            return
        if camera_id in self.published:
            self._tombstone(camera_id, f"Camera {ref} deleted")

    def _tombstone(self, camera_id: str, why: str) -> None:
        publish(self.kafka, self.runtime.serde, [], [camera_id])
        PUBLISHED.labels("tombstone").inc()
        self.published.pop(camera_id, None)
        self.status.forget(camera_id)
        log.info("tombstoned camera %s (%s)", camera_id, why)
        CAMERAS_KNOWN.set(len(self.published))

    # ---- full resync ------------------------------------------------------------------------------------------

    def resync(self) -> str:
        """List every Camera and converge the topic to it in one transaction; returns the list's version."""
        items, version = self.cameras.list()
        owners, losers = claim_ids(items)
        self.resources = {ref_of(r): r for r in items}
        self.owner_of = {cid: ref_of(r) for cid, r in owners.items()}
        self.handled = {ref: done for ref, done in self.handled.items() if ref in self.resources}
        self.judged = {
            ref_of(r): (
                r["metadata"].get("generation"),
                json.dumps(r["metadata"].get("annotations") or {}, sort_keys=True),
            )
            for r in items
        }
        desired: dict[str, CameraEntry] = {}
        verdicts: list[tuple[dict[str, Any], CameraEntry | None, InvalidCamera | None]] = []
        for resource in items:
            entry, error = self._judge(resource)
            if entry is not None:
                desired[entry.camera_id] = entry
            verdicts.append((resource, entry, error))
        on_topic = read_inventory(self.kafka, self.runtime.serde, timeout_s=60)
        if not self.config.prune:
            on_topic = {cid: e for cid, e in on_topic.items() if cid in desired}
        changed, removed = plan_resync(desired, on_topic)
        if changed or removed:
            publish(self.kafka, self.runtime.serde, changed, removed)
        PUBLISHED.labels("camera").inc(len(changed))
        PUBLISHED.labels("tombstone").inc(len(removed))
        self.published = {cid: fingerprint(e) for cid, e in desired.items()}
        log.info(
            "resync: %d Cameras, %d published, %d tombstoned, %d refused (%d duplicate ids)",
            len(items),
            len(changed),
            len(removed),
            sum(1 for v in verdicts if v[2]),
            len(losers),
        )
        for resource, entry, error in verdicts:
            self._report(resource, entry, error)
        CAMERAS_KNOWN.set(len(self.published))
        return version

    # ---- the leader's loop --------------------------------------------------------------------------------------

    def lead(self) -> None:
        """Resync, then follow watch events until leadership is lost or shutdown is requested."""
        version = self.resync()
        next_resync = time.monotonic() + self.config.resync_every_s
        while not self.runtime.shutdown.requested and self.elector.still_leading(time.time()):
            self.runtime.health.beat()
            LEADER.set(1)
            if time.monotonic() >= next_resync:
                version = self.resync()
                next_resync = time.monotonic() + self.config.resync_every_s
            try:
                for kind, obj in self.cameras.watch(version, timeout_s=self.config.watch_timeout_s):
                    self.runtime.health.beat()
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if kind in ("ADDED", "MODIFIED"):
                        self.on_upsert(obj)
                    elif kind == "DELETED":
                        self.on_delete(obj)
                    elif kind == "ERROR":  # e.g. 410 Gone delivered as an event: start from a fresh list
                        log.info("watch ended with %s; listing again", obj.get("message", obj))
                        version = self.resync()
                        break
                    self.status.write(self.owner_of, self.resources, self._patch)
                    if self.runtime.shutdown.requested or not self.elector.still_leading(time.time()):
                        return
            except ApiException as error:
                if error.status != 410:
                    raise
                version = self.resync()  # the watch fell too far behind: start from a fresh list
            self.status.write(self.owner_of, self.resources, self._patch)

    def run(self) -> None:
        stop = threading.Event()
        follower = threading.Thread(target=self.status.follow, args=(stop,), name="pipeline-status", daemon=True)
        follower.start()
        renewer = threading.Thread(target=self._keep_lease, args=(stop,), name="lease", daemon=True)
        renewer.start()
        self.runtime.health.set_ready(True)
        try:
            while not self.runtime.shutdown.requested:
                self.runtime.health.beat()
                LEADER.set(1 if self.elector.leading.is_set() else 0)
                if self.elector.leading.wait(0.5):
                    LEADER.set(1)
                    self.lead()
        finally:
            stop.set()
            renewer.join(10)
            self.elector.release()
            follower.join(10)

    def _keep_lease(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.elector.step(time.time())
            except (ApiException, OSError, HTTPError) as error:  # the API server being away must not kill the loop
                log.warning("lease renewal failed: %s", error)
            stop.wait(self.config.renew_every_s)


def main() -> None:
    runtime = start_service(SERVICE, ControllerSettings)
    try:
        CameraController(runtime).run()
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
