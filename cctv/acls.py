"""Least-privilege Kafka access: one SCRAM principal per service and per agency, and the ACLs each needs.

The plan is pure data (principal → topic/group/transactional-id permissions) computed from the topic
set; `apply_acls` writes it to a cluster through the admin API, `strimzi_users` renders it as Strimzi
`KafkaUser` resources for Kubernetes. Whatever is not granted is denied: the broker runs with
StandardAuthorizer and `allow.everyone.if.no.acl.found=false`.

Consumer groups and internal topics are granted by PREFIX on the service's default name (e.g. group
`cctv-detector*`), so replicas, blue/green deployments and tests with suffixed group ids keep working
while one service still cannot join another's group.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from libs.topics import (
    ALERTS,
    AUDIT,
    CAMERA_ACTIVITY,
    CAMERA_STATUS,
    CAMERAS,
    DETECTIONS,
    DLQ,
    FRAMES,
    INCIDENT_ACTIONS,
    PLATFORM_EVENTS,
    SHARES,
    VIDEO_PACKETS,
    destination_topic,
)

ResourceKind = Literal["topic", "group", "transactional-id"]
Pattern = Literal["literal", "prefixed"]
READ = ("READ", "DESCRIBE")
WRITE = ("WRITE", "DESCRIBE")
_DESTINATION_TOPIC = re.compile(r"^cctv\.alerts\.([a-z0-9][a-z0-9-]*)\.v1$")
# Short-lived readers of the camera inventory (libs/inventory.py) use groups `cctv-inventory-<random>`.
INVENTORY_READER_GROUP = "cctv-inventory-"


@dataclass(frozen=True, order=True)
class Grant:
    """`principal` may do `operations` on the resource(s) `kind`:`name` (literal or by prefix)."""

    principal: str  # SCRAM user name; the Kafka principal is User:<principal>
    kind: ResourceKind
    name: str
    pattern: Pattern
    operations: tuple[str, ...]


@dataclass(frozen=True)
class ServiceAccess:
    """What one service reads and writes; its principal is `cctv-<service>`."""

    service: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    group_prefixes: tuple[str, ...]
    # Topics the service creates itself (Faust changelogs), granted by prefix.
    owned_topic_prefix: str | None = None
    # Transactional ids it produces under (the inventory publisher), granted by prefix.
    transactional_prefix: str | None = None
    # DESCRIBE on every pipeline group, to show their lag (the console's health view).
    describes_groups: bool = False


def service_access(destination_topics: tuple[str, ...]) -> list[ServiceAccess]:
    return [
        ServiceAccess("ingest", (CAMERAS,), (VIDEO_PACKETS, CAMERA_STATUS, DLQ), ("cctv-ingest",)),
        ServiceAccess(
            "frame-sampler",
            (VIDEO_PACKETS, CAMERAS),
            (FRAMES, CAMERA_ACTIVITY, DLQ),
            ("cctv-frame-sampler", INVENTORY_READER_GROUP),
        ),
        ServiceAccess("detector", (FRAMES,), (DETECTIONS, DLQ), ("cctv-detector",)),
        # Reads frames only to attach the evidence snapshot (claim check) to an alert.
        ServiceAccess(
            "alert-router",
            (DETECTIONS, CAMERAS, FRAMES),
            (ALERTS, DLQ, *destination_topics),
            ("cctv-alert-router", INVENTORY_READER_GROUP, "cctv-alert-evidence-"),
            owned_topic_prefix="cctv-alert-router",
        ),
        # Every replica rebuilds incidents from alerts + actions and shows frames, boxes, health and events.
        ServiceAccess(
            "console",
            (
                ALERTS,
                INCIDENT_ACTIONS,
                CAMERA_ACTIVITY,
                CAMERA_STATUS,
                DETECTIONS,
                FRAMES,
                CAMERAS,
                PLATFORM_EVENTS,
                AUDIT,
                SHARES,
            ),
            (INCIDENT_ACTIONS, AUDIT, SHARES),
            ("cctv-console-", INVENTORY_READER_GROUP),
            describes_groups=True,
        ),
        # Cuts clips from raw video around each incident; holds, downloads and deletions are audited.
        ServiceAccess("clip-writer", (ALERTS, VIDEO_PACKETS), (AUDIT, DLQ), ("cctv-clip-writer",)),
        # Webhooks: reads the routed copies, audits every snapshot released.
        ServiceAccess("dispatcher", destination_topics, (AUDIT, DLQ), ("cctv-dispatcher",)),
        # Live-video shares: plays the packets of shared cameras, records openings and expiries.
        ServiceAccess("share-gateway", (SHARES, VIDEO_PACKETS), (AUDIT, SHARES), ("cctv-share-gateway",)),
        # Camera resources → inventory (transactions), pipeline state → Camera status.
        ServiceAccess(
            "camera-controller",
            (CAMERA_STATUS, CAMERA_ACTIVITY, ALERTS, CAMERAS),
            (CAMERAS,),
            ("cctv-camera-controller", INVENTORY_READER_GROUP),
            transactional_prefix="cctv-inventory-",
        ),
    ]


def service_principal(service: str) -> str:
    return f"cctv-{service}"


def agency_principal(destination: str) -> str:
    return f"agency-{destination}"


def destinations_of(topics: Iterable[str]) -> list[str]:
    """The agencies of a topic set: every `cctv.alerts.<destination>.v1`."""
    return sorted({m.group(1) for t in topics if (m := _DESTINATION_TOPIC.match(t))})


def plan(topics: Iterable[str]) -> list[Grant]:
    """Every grant for the pipeline's principals over `topics` (grants on absent topics are left out)."""
    present = set(topics)
    destinations = destinations_of(present)
    routed = tuple(destination_topic(d) for d in destinations)
    grants: list[Grant] = []
    for access in service_access(routed):
        principal = service_principal(access.service)
        grants += [Grant(principal, "topic", t, "literal", READ) for t in access.reads if t in present]
        grants += [Grant(principal, "topic", t, "literal", WRITE) for t in access.writes if t in present]
        grants += [Grant(principal, "group", g, "prefixed", ("READ", "DESCRIBE")) for g in access.group_prefixes]
        if access.transactional_prefix:
            grants.append(Grant(principal, "transactional-id", access.transactional_prefix, "prefixed", WRITE))
        if access.describes_groups:
            grants.append(Grant(principal, "group", "cctv-", "prefixed", ("DESCRIBE",)))
        if access.owned_topic_prefix:
            grants.append(
                Grant(
                    principal,
                    "topic",
                    access.owned_topic_prefix,
                    "prefixed",
                    ("CREATE", "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"),
                )
            )
    for destination in destinations:
        principal = agency_principal(destination)
        grants.append(Grant(principal, "topic", destination_topic(destination), "literal", READ))
        grants.append(Grant(principal, "group", principal, "prefixed", ("READ", "DESCRIBE")))
    grants += _operator_grants(present)
    return _merged(grants)


def _merged(grants: list[Grant]) -> list[Grant]:
    """One grant per principal and resource, its operations the union (the broker rejects duplicates)."""
    operations: dict[tuple[str, ResourceKind, str, Pattern], list[str]] = {}
    for grant in grants:
        ops = operations.setdefault((grant.principal, grant.kind, grant.name, grant.pattern), [])
        ops += [op for op in grant.operations if op not in ops]
    return sorted(Grant(*key, tuple(sorted(ops, key=_OPERATION_ORDER.index))) for key, ops in operations.items())


_OPERATION_ORDER = ["CREATE", "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"]


def _operator_grants(present: set[str]) -> list[Grant]:
    """`cctv-operator`: the CLI of the control room (cameras import, status, alerts tail) — everything
    but raw video, and writes only the inventory (transactionally) and platform events."""
    principal = "cctv-operator"
    grants = [Grant(principal, "topic", t, "literal", READ) for t in sorted(present) if t != VIDEO_PACKETS]
    grants += [Grant(principal, "topic", t, "literal", WRITE) for t in (CAMERAS, PLATFORM_EVENTS) if t in present]
    grants.append(Grant(principal, "transactional-id", "cctv-inventory-", "prefixed", ("WRITE", "DESCRIBE")))
    # Its own short-lived readers; DESCRIBE on every pipeline group so `cctv status` can show their lag.
    grants += [
        Grant(principal, "group", g, "prefixed", ("READ", "DESCRIBE"))
        for g in ("cctv-compacted-reader-", "cctv-alerts-tail-", "cctv-audit-ledger-", INVENTORY_READER_GROUP)
    ]
    grants.append(Grant(principal, "group", "cctv-", "prefixed", ("DESCRIBE",)))
    return grants


def principals(grants: Iterable[Grant]) -> list[str]:
    return sorted({g.principal for g in grants})


def describe(grants: Iterable[Grant]) -> list[tuple[str, str, str, str]]:
    """Rows for a table: principal, resource, pattern, operations."""
    return [(f"User:{g.principal}", f"{g.kind}:{g.name}", g.pattern, ",".join(g.operations)) for g in grants]


_STRIMZI_KIND = {"topic": "topic", "group": "group", "transactional-id": "transactionalId"}


def strimzi_users(grants: Iterable[Grant], cluster: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """Strimzi `KafkaUser` resources (SCRAM-SHA-512, simple authorization) carrying the plan."""
    by_principal: dict[str, list[Grant]] = {}
    for grant in grants:
        by_principal.setdefault(grant.principal, []).append(grant)
    users = []
    for principal, own in sorted(by_principal.items()):
        metadata: dict[str, Any] = {"name": principal, "labels": {"strimzi.io/cluster": cluster}}
        if namespace:
            metadata["namespace"] = namespace
        acls = [
            {
                "resource": {
                    "type": _STRIMZI_KIND[g.kind],
                    "name": g.name,
                    "patternType": "literal" if g.pattern == "literal" else "prefix",
                },
                "operations": [op.replace("_", " ").title().replace(" ", "") for op in g.operations],
                "host": "*",
            }
            for g in own
        ]
        users.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaUser",
                "metadata": metadata,
                "spec": {
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {"type": "simple", "acls": acls},
                },
            }
        )
    return users


def acl_bindings(grants: Iterable[Grant]) -> list[Any]:
    """confluent-kafka AclBindings (ALLOW, any host) for the admin API."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    kinds = {
        "topic": ResourceType.TOPIC,
        "group": ResourceType.GROUP,
        "transactional-id": ResourceType.TRANSACTIONAL_ID,
    }
    patterns = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
    return [
        AclBinding(
            kinds[g.kind],
            g.name,
            patterns[g.pattern],
            f"User:{g.principal}",
            "*",
            AclOperation[op],
            AclPermissionType.ALLOW,
        )
        for g in grants
        for op in g.operations
    ]


def apply_acls(admin: Any, grants: Iterable[Grant], timeout_s: float = 30.0) -> int:
    """Create the bindings (creating an existing one is a no-op on the broker); returns how many."""
    bindings = acl_bindings(grants)
    for future in admin.create_acls(bindings, request_timeout=timeout_s).values():
        future.result()
    return len(bindings)


def upsert_scram_users(admin: Any, passwords: Mapping[str, str], timeout_s: float = 30.0) -> None:
    """Create or change SCRAM-SHA-512 credentials (the broker stores only salted hashes)."""
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts = [UserScramCredentialUpsertion(user, info, password.encode()) for user, password in passwords.items()]
    for future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).values():
        future.result()
