"""The pipeline's topics: names, which Avro record each carries, and how each is configured.

The main producer and consumers are noted next to each; the README's "Layout" table names every producing
and consuming module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CAMERAS = "cctv.cameras.v1"  # producers: `cctv cameras`, camera-controller; consumers: every service, the CLI
CAMERA_STATUS = "cctv.camera-status.v1"  # producer: ingest; consumers: `cctv status`, console, camera-controller
VIDEO_PACKETS = "cctv.video.packets.v1"  # producer: ingest; consumers: frame-sampler, clip-writer
FRAMES = "cctv.frames.v1"  # producer: frame-sampler; consumers: detector, alert-router (evidence), console
CAMERA_ACTIVITY = "cctv.camera-activity.v1"  # producer: frame-sampler; consumers: console wall, `cctv status`
DETECTIONS = "cctv.detections.v1"  # producer: detector; consumers: alert-router, console wall
ALERTS = "cctv.alerts.v1"  # producer: alert-router; consumers: clip-writer, console, `cctv alerts tail`
DLQ = "cctv.dlq.v1"  # producer: every service; consumer: SREs
PLATFORM_EVENTS = (
    "cctv.platform-events.v1"  # producer: process supervisor (`cctv up`); consumers: console, `cctv status`
)
INCIDENT_ACTIONS = (
    "cctv.incident-actions.v1"  # producer: console (operators' actions); consumers: every console replica
)
AUDIT = "cctv.audit.v1"  # producers: console (logins, live views, actions, denials), clip-writer and `cctv evidence` (holds, downloads, deletions), dispatcher (snapshots released); consumers: console, `cctv audit`, auditors
SHARES = "cctv.shares.v1"  # producers: console (created, revoked), share-gateway (expired); consumers: share-gateway, console

DEFAULT_DESTINATIONS = ("police", "fire", "disaster-management", "social-welfare")
# One topic-name segment: lowercase letters, digits and inner dashes (Kafka also allows '.' and '_', but
# they would blur the segment boundaries of cctv.alerts.<destination>.v1 and collide in metric names).
DESTINATION_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
DESTINATION_RULE = "use lowercase letters, digits and inner dashes, at most 64 characters"

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


# What one ingest replica serves at most (its camera limit, CPU-bound); the inventory's partitions bound
# the number of replicas, so they are sized from the largest deployment at creation.
CAMERAS_PER_INGEST_REPLICA = 1000


def scale_for_cameras(cameras: int, cameras_per_replica: int = CAMERAS_PER_INGEST_REPLICA) -> int:
    """The `scale` for pipeline_topics that lets enough ingest replicas share `cameras`, with 25 % headroom
    for growth and for replicas lost to a zone outage (a topic's partitions can grow later, see
    cctv/topic_growth.py, but growing a keyed topic is an operation; sizing right avoids it)."""
    replicas = -(-cameras * 5 // (4 * cameras_per_replica))  # ceil(cameras * 1.25 / per replica)
    return max(1, -(-replicas // 12))


def destination_topic(destination: str) -> str:
    """cctv.alerts.<destination>.v1 — the routed copy of alerts for one agency (the only place that
    builds these names)."""
    if not DESTINATION_PATTERN.match(destination):
        raise ValueError(f"destination {destination!r} is not topic-safe: {DESTINATION_RULE}")
    return f"cctv.alerts.{destination}.v1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str  # Avro record name carried as value
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def pipeline_topics(destinations: tuple[str, ...] = DEFAULT_DESTINATIONS, scale: int = 1) -> list[TopicSpec]:
    """All topics with sensible defaults; `scale` multiplies the partitions of the per-camera streams."""
    per_camera = 12 * scale
    alerts = {"retention.ms": str(30 * DAY_MS), "max.message.bytes": str(2 * 1024 * 1024)}
    specs = [
        TopicSpec(
            CAMERAS,
            "CameraConfig",
            per_camera,
            {
                "cleanup.policy": "compact",
                "min.compaction.lag.ms": "0",
                "segment.ms": str(HOUR_MS),
            },
        ),
        TopicSpec(
            CAMERA_STATUS,
            "CameraStatus",
            per_camera,
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(7 * DAY_MS),
            },
        ),
        # Raw video is large and only useful while fresh: short retention, big messages allowed.
        TopicSpec(
            VIDEO_PACKETS,
            "VideoPacket",
            per_camera,
            {
                "retention.ms": str(HOUR_MS),
                "max.message.bytes": str(8 * 1024 * 1024),
                "segment.bytes": str(256 * 1024 * 1024),
            },
        ),
        # Frames feed the detector and the alert-router's snapshot (read within seconds); lasting
        # evidence is the clip in object storage (clip-writer), so minutes are enough.
        TopicSpec(
            FRAMES,
            "Frame",
            per_camera,
            {
                "retention.ms": str(15 * MINUTE_MS),
                "max.message.bytes": str(8 * 1024 * 1024),
                "segment.ms": str(5 * MINUTE_MS),
            },
        ),
        TopicSpec(
            CAMERA_ACTIVITY,
            "CameraActivity",
            per_camera,
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(7 * DAY_MS),
            },
        ),
        TopicSpec(DETECTIONS, "Detections", per_camera, {"retention.ms": str(3 * DAY_MS)}),
        TopicSpec(ALERTS, "Alert", 6, alerts),
        TopicSpec(PLATFORM_EVENTS, "PlatformEvent", 1, {"retention.ms": str(7 * DAY_MS)}),
        # Operators' actions rebuild incident state: kept as long as the alerts they act on.
        TopicSpec(INCIDENT_ACTIONS, "IncidentAction", 6, {"retention.ms": str(30 * DAY_MS)}),
        # The access ledger outlives the evidence it describes (clips: 30 days); a year and a month.
        TopicSpec(AUDIT, "AuditRecord", 3, {"retention.ms": str(400 * DAY_MS)}),
        # Live-video shares: latest record per share; ended shares age out after a week (lifetimes are hours).
        TopicSpec(
            SHARES,
            "ShareRecord",
            3,
            {"cleanup.policy": "compact,delete", "retention.ms": str(7 * DAY_MS), "min.compaction.lag.ms": "0"},
        ),
        TopicSpec(
            DLQ,
            "DeadLetter",
            3,
            {
                "retention.ms": str(14 * DAY_MS),
                "max.message.bytes": str(16 * 1024 * 1024),
            },
        ),
    ]
    specs += [TopicSpec(destination_topic(d), "Alert", 3, alerts) for d in destinations]
    return specs
