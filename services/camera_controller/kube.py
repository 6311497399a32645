"""Thin adapters over the official `kubernetes` client: Camera resources, their status, Events,
the credentials Secret's key names, and a Lease for leader election."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from services.camera_controller.core import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    LeaseState,
    lease_action,
)

log = logging.getLogger(__name__)


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """In-cluster credentials (the pod's ServiceAccount) unless a kubeconfig file is named."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config()


class CameraApi:
    def __init__(self, api: client.ApiClient, namespace: str = "") -> None:
        self.namespace = namespace  # "" = every namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def list(self) -> tuple[list[dict[str, Any]], str]:
        result: dict[str, Any]
        if self.namespace:
            result = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)  # type: ignore[assignment]
        else:
            result = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)  # type: ignore[assignment]
        return result["items"], result["metadata"]["resourceVersion"]

    def watch(self, resource_version: str, timeout_s: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after `resource_version`; ends after `timeout_s` (then list again or
        re-watch). Raises ApiException(410) when the version is too old."""
        stream = watch.Watch()
        if self.namespace:
            events = stream.stream(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                resource_version=resource_version,
                timeout_seconds=timeout_s,
                allow_watch_bookmarks=True,
            )
        else:
            events = stream.stream(
                self.custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                PLURAL,
                resource_version=resource_version,
                timeout_seconds=timeout_s,
                allow_watch_bookmarks=True,
            )
        for event in events:
            yield event["type"], event["object"]

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})

    def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """Key names only: the values are never kept, logged or published."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status in (403, 404):
                return None
            raise
        return set((secret.data or {}).keys()) | set((secret.string_data or {}).keys())

    def event(self, resource: dict[str, Any], kind: str, reason: str, message: str, component: str) -> None:
        meta = resource["metadata"]
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            type=kind,
            reason=reason,
            message=message[:1024],
            source=client.V1EventSource(component=component),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component=component,
            reporting_instance=socket.gethostname(),
        )
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as error:  # an Event is a courtesy; the condition carries the same message
            log.warning("could not record event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], error.reason)


class LeaseElector:
    """coordination.k8s.io Lease leader election: renew every `renew_s`; someone else may take the
    Lease once it has not been renewed for `duration_s`. Writes are optimistic (resourceVersion), so
    two replicas racing for an expired Lease cannot both win."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        duration_s: float = 15.0,
        renew_s: float = 5.0,
    ) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration_s, self.renew_s = duration_s, renew_s
        self.leading = threading.Event()
        self._renewed_at = 0.0

    def step(self, now: float) -> bool:
        """One attempt to acquire or renew; returns whether this replica leads afterwards."""
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            lease = None
        state = None
        if lease is not None:
            spec = lease.spec = lease.spec or client.V1LeaseSpec()
            renew = spec.renew_time or spec.acquire_time
            state = LeaseState(
                spec.holder_identity,
                renew.timestamp() if renew else None,
                float(spec.lease_duration_seconds or self.duration_s),
            )
        action = lease_action(state, self.identity, now)
        stamp = datetime.fromtimestamp(now, tz=UTC)
        try:
            if action == "create":
                self.coordination.create_namespaced_lease(
                    self.namespace,
                    client.V1Lease(
                        metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                        spec=client.V1LeaseSpec(
                            holder_identity=self.identity,
                            lease_duration_seconds=int(self.duration_s),
                            acquire_time=stamp,
                            renew_time=stamp,
                            lease_transitions=0,
                        ),
                    ),
                )
            elif action in ("renew", "take"):
                assert lease is not None and lease.spec is not None
                if action == "take":
                    lease.spec.holder_identity = self.identity
                    lease.spec.acquire_time = stamp
                    lease.spec.lease_transitions = (lease.spec.lease_transitions or 0) + 1
                lease.spec.renew_time = stamp
                lease.spec.lease_duration_seconds = int(self.duration_s)
                self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
            else:
                self._lose()
                return False
        except ApiException as error:
            if error.status in (409, 422):  # another replica wrote first
                self._lose()
                return False
            raise
        if not self.leading.is_set():
            log.info("became leader (Lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
        self._renewed_at = now
        self.leading.set()
        return True

    def _lose(self) -> None:
        if self.leading.is_set():
            log.warning("lost leadership (Lease %s/%s)", self.namespace, self.name)
        self.leading.clear()

    def still_leading(self, now: float) -> bool:
        """False once a renewal is overdue: stop writing before another replica may take over."""
        if self.leading.is_set() and now - self._renewed_at > self.duration_s * 0.8:
            self._lose()
        return self.leading.is_set()

    def release(self) -> None:
        """Hand the Lease over at shutdown so a standby takes over at once instead of after expiry."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as error:
            log.warning("could not release the Lease: %s", error.reason)


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


__all__ = ["ApiException", "CameraApi", "LeaseElector", "api_client", "default_identity"]
