"""Confluent framing against a real registry (Apicurio, started by the project from Maven Central)."""

from __future__ import annotations

import json
import re
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from libs.serde import AvroSerde, SerdeError, shipped_catalog
from tests.seeded import sample_records, seed_for
from tests.test_serde import EXPECTED, assert_same

CATALOG = shipped_catalog()


@pytest.fixture(scope="module")
def client(schema_registry) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry.url})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_confluent_round_trip_and_downstream_deserializer(client: SchemaRegistryClient, unique: str, name: str) -> None:
    serde = AvroSerde(CATALOG, client)
    topic = f"test.{name.lower()}.{unique}"
    downstream = AvroDeserializer(client)  # what a downstream team uses, knowing nothing of our code
    for record in sample_records(CATALOG.get(name).parsed, 10, seed_for(name)):
        data = serde.serialize(topic, name, record)
        magic, schema_id = struct.unpack(">bI", data[:5])
        assert magic == 0 and schema_id > 0
        assert_same(record, serde.deserialize(topic, name, data))
        # A fresh serde (new process) resolves the writer schema by id from the registry.
        assert_same(record, AvroSerde(CATALOG, client).deserialize(topic, name, data))
        decoded = downstream(data, SerializationContext(topic, MessageField.VALUE))
        assert_same_downstream(record, decoded)


def assert_same_downstream(ours: Any, theirs: Any, path: str = "") -> None:
    """A downstream deserializer applies Avro logical types: our epoch integers come back as datetimes."""
    if isinstance(theirs, datetime):
        since_epoch = theirs - datetime(1970, 1, 1, tzinfo=UTC)
        micros = (since_epoch.days * 86_400 + since_epoch.seconds) * 1_000_000 + since_epoch.microseconds
        assert ours in (micros, micros // 1000), f"{path}: {ours} != {theirs}"
    elif isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), path
        for key in ours:
            assert_same_downstream(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_downstream(a, b, f"{path}[{index}]")
    else:
        assert_same(ours, theirs, path)


def test_bytes_identical_to_confluent_serializer(client: SchemaRegistryClient, unique: str) -> None:
    topic = f"test.ident.{unique}"
    definition = CATALOG.get("CameraActivity").definition
    theirs = AvroSerializer(client, json.dumps(definition), conf={"auto.register.schemas": True})
    ours = AvroSerde(CATALOG, client)
    record = {"camera_id": "cam-7", "state": "IDLE", "motion_score": 0.25, "since": 123, "timestamp": 456}
    assert ours.serialize(topic, "CameraActivity", record) == theirs(
        record, SerializationContext(topic, MessageField.VALUE)
    )


def test_serde_reports_a_schema_the_registry_refuses_and_registers_a_compatible_one(
    client: SchemaRegistryClient, unique: str
) -> None:
    """A subject already holds a version our shipped schema cannot read (BACKWARD): our serde must fail
    with a clear SerdeError naming schema and subject, never produce under an id consumers cannot read."""
    definition = CATALOG.get("CameraActivity").definition
    record = {"camera_id": "cam-7", "state": "IDLE", "motion_score": 0.25, "since": 123, "timestamp": 456}
    refused_topic = f"test.compat.refused.{unique}"
    incompatible = json.loads(json.dumps(definition))
    next(f for f in incompatible["fields"] if f["name"] == "motion_score")["type"] = "string"
    client.register_schema(f"{refused_topic}-value", Schema(json.dumps(incompatible), "AVRO"))
    client.set_compatibility(f"{refused_topic}-value", "BACKWARD")
    with pytest.raises(SerdeError, match=f"refused CameraActivity for subject {re.escape(refused_topic)}-value"):
        AvroSerde(CATALOG, client).serialize(refused_topic, "CameraActivity", record)
    assert len(client.get_versions(f"{refused_topic}-value")) == 1

    # A compatible earlier version (one more optional field, dropped since): ours registers as version 2.
    accepted_topic = f"test.compat.accepted.{unique}"
    earlier = json.loads(json.dumps(definition))
    earlier["fields"].append({"name": "operator", "type": ["null", "string"], "default": None, "doc": "dropped"})
    client.register_schema(f"{accepted_topic}-value", Schema(json.dumps(earlier), "AVRO"))
    client.set_compatibility(f"{accepted_topic}-value", "BACKWARD")
    data = AvroSerde(CATALOG, client).serialize(accepted_topic, "CameraActivity", record)
    assert len(client.get_versions(f"{accepted_topic}-value")) == 2
    assert AvroSerde(CATALOG, client).deserialize(accepted_topic, "CameraActivity", data) == record


def test_cli_registry_start_is_idempotent(schema_registry) -> None:
    from typer.testing import CliRunner

    from cctv.cli import app

    result = CliRunner().invoke(app, ["registry", "start", "--port", str(schema_registry.port)])
    assert result.exit_code == 0 and "already running" in result.output


def test_cli_beside_the_dev_stack_finds_its_registry(schema_registry, kafka_broker) -> None:
    """`cctv alerts tail` next to `make run` must read registry-framed records without extra settings."""
    from cctv.devstack.registry import dev_stack_registry_url

    ports = {"broker_port": kafka_broker.port, "registry_port": schema_registry.port}
    assert dev_stack_registry_url(kafka_broker.bootstrap, **ports) == schema_registry.url
    assert dev_stack_registry_url("kafka.example.org:9092", **ports) is None  # a real cluster: say so explicitly
    assert dev_stack_registry_url(kafka_broker.bootstrap, kafka_broker.port, schema_registry.port + 7) is None
