"""The evidence snapshot while the broker is away: the alert goes out without its image, the worker lives.

Found by the chaos run (tests/test_chaos.py): during a broker restart the evidence fetch raised
KafkaException ('Failed to get watermark offsets') out of the expiry timer, and Faust took the whole
alert-router down."""

from __future__ import annotations

from prometheus_client import REGISTRY

from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from services.alert_router.evidence import FrameFetcher, evidence_snapshot
from services.alert_router.main import AlertRouterSettings
from services.alert_router.model import AlertEvent, AlertKind, FrameRef, Severity, TrackedBox
from tests.kafka_helpers import refusing_port


def test_unreachable_broker_gives_an_alert_without_snapshot_not_a_crash() -> None:
    with refusing_port() as port:
        kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}")
        fetcher = FrameFetcher(kafka, AvroSerde(shipped_catalog()))
        event = AlertEvent(
            kind=AlertKind.END,
            alert_id="0b43f565-0000-5000-8000-000000000000",
            rule="intrusion",
            rule_type="intrusion",
            zone="road",
            camera_id="cam",
            site_id="site",
            severity=Severity.HIGH,
            started_at=1_000,
            detected_at=12_000,
            ended_at=2_000,
            track_ids=[1],
            boxes=[TrackedBox(1, "person", 0.9, 0.1, 0.1, 0.2, 0.4)],
            frame_ref=FrameRef("cctv.frames.v1", 0, 5),
            description="person in road",
        )
        labels = {"reason": "broker-unavailable"}
        before = REGISTRY.get_sample_value("cctv_alert_router_evidence_missing_total", labels) or 0.0
        settings = AlertRouterSettings(kafka=kafka)
        assert evidence_snapshot(fetcher, event, settings.snapshot_max_bytes, settings.snapshot_max_dim) is None
        assert REGISTRY.get_sample_value("cctv_alert_router_evidence_missing_total", labels) == before + 1
        fetcher.consumer.close()
