"""Shared fixtures. Tests that need Kafka talk to a real Apache Kafka broker (KRaft) started once per
session by the project's own devstack (or reused if one already runs on the test port)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cctv.devstack.kafka import KafkaBroker
from libs.settings import KafkaSettings

if TYPE_CHECKING:
    from cctv.devstack.k8s import KubeControlPlane
    from cctv.devstack.registry import SchemaRegistry

REPO = Path(__file__).resolve().parents[1]
TEST_KAFKA_PORT = int(os.environ.get("CCTV_TEST_KAFKA_PORT", "19092"))


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(port=TEST_KAFKA_PORT)
    outcome = broker.start(timeout_s=120)
    yield broker
    if outcome == "started" and not os.environ.get("CCTV_TEST_KEEP_KAFKA"):
        broker.stop()


@pytest.fixture(scope="session")
def kafka_settings(kafka_broker: KafkaBroker) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names, so tests never see each other's records."""
    return uuid.uuid4().hex[:10]


TEST_REGISTRY_PORT = int(os.environ.get("CCTV_TEST_REGISTRY_PORT", "18081"))


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[SchemaRegistry]:
    """A real Apicurio Registry (Confluent-compatible API), started once per session."""
    from cctv.devstack.registry import SchemaRegistry

    registry = SchemaRegistry(port=TEST_REGISTRY_PORT)
    outcome = registry.start(timeout_s=240)
    yield registry
    if outcome == "started" and not os.environ.get("CCTV_TEST_KEEP_KAFKA"):
        registry.stop()


@pytest.fixture
def publish_cameras(kafka_settings: KafkaSettings):
    """Publish cameras to the shared inventory and remove them (tombstones) after the test, so later
    tests' ingest replicas never pull another test's cameras."""
    from cctv.inventory import publish
    from libs.kafka import create_topics
    from libs.serde import AvroSerde, shipped_catalog
    from libs.topics import pipeline_topics

    create_topics(kafka_settings, pipeline_topics())
    serde = AvroSerde(shipped_catalog())
    published: set[str] = set()

    def _publish(entries: list) -> None:
        publish(kafka_settings, serde, entries)
        published.update(entry.camera_id for entry in entries)

    yield _publish
    if published:
        publish(kafka_settings, serde, [], sorted(published))


TEST_K8S_PORT = int(os.environ.get("CCTV_TEST_K8S_PORT", "16443"))


@pytest.fixture(scope="session")
def kube_api() -> Iterator[KubeControlPlane]:
    """A real kube-apiserver + etcd (+ controller-manager), started once per session or reused."""
    from cctv.devstack.k8s import KubeControlPlane

    control_plane = KubeControlPlane(port=TEST_K8S_PORT)
    outcome = control_plane.start(timeout_s=180)
    yield control_plane
    if outcome == "started" and not os.environ.get("CCTV_TEST_KEEP_KAFKA"):
        control_plane.stop()
