"""Confluent framing against a real registry (Apicurio, started by the project from Maven Central)."""

from __future__ import annotations

import json
import struct

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from libs.serde import AvroSerde, shipped_catalog
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
        assert decoded["camera_id" if "camera_id" in record else next(iter(record))] is not None


def test_bytes_identical_to_confluent_serializer(client: SchemaRegistryClient, unique: str) -> None:
    topic = f"test.ident.{unique}"
    definition = CATALOG.get("CameraActivity").definition
    theirs = AvroSerializer(client, json.dumps(definition), conf={"auto.register.schemas": True})
    ours = AvroSerde(CATALOG, client)
    record = {"camera_id": "cam-7", "state": "IDLE", "motion_score": 0.25, "since": 123, "timestamp": 456}
    assert ours.serialize(topic, "CameraActivity", record) == theirs(record, SerializationContext(topic, MessageField.VALUE))


def test_registry_enforces_backward_compatibility(client: SchemaRegistryClient, unique: str) -> None:
    subject = f"test.compat.{unique}-value"
    definition = CATALOG.get("CameraActivity").definition
    client.register_schema(subject, Schema(json.dumps(definition), "AVRO"))
    client.set_compatibility(subject, "BACKWARD")
    breaking = json.loads(json.dumps(definition))
    breaking["fields"].append({"name": "operator", "type": "string", "doc": "no default"})
    with pytest.raises(SchemaRegistryError):
        client.register_schema(subject, Schema(json.dumps(breaking), "AVRO"))
    compatible = json.loads(json.dumps(definition))
    compatible["fields"].append({"name": "operator", "type": ["null", "string"], "default": None, "doc": "ok"})
    assert client.register_schema(subject, Schema(json.dumps(compatible), "AVRO")) > 0


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
