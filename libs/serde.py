"""Avro serde for every topic, in one of two framings.

* Confluent Schema Registry wire format (byte 0x00, 4-byte big-endian schema id, Avro binary), used
  whenever a registry URL is configured. This is what confluent-kafka's AvroDeserializer, Kafka
  Connect, ksqlDB and Flink read. Schemas are registered under the TopicNameStrategy subject
  ``<topic>-value``.
* Avro single-object encoding (0xC3 0x01, 8-byte little-endian CRC-64-AVRO fingerprint of the
  schema's Parsing Canonical Form, Avro binary), used only when no registry is configured; the
  writer schema is resolved by fingerprint against the shipped ``schemas/``.

Decoding looks at the first byte, so a consumer reads either framing. Data is always read with
the shipped schema as reader schema, so producers on an older compatible schema are resolved.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from libs.settings import RegistrySettings

CONFLUENT_MAGIC = 0x00
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SCHEMAS_DIR_ENV = "CCTV_SCHEMAS_DIR"


class SerdeError(Exception):
    """A record could not be encoded or decoded; the message says why."""


def default_schemas_dir() -> Path:
    configured = os.environ.get(SCHEMAS_DIR_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[1] / "schemas"


def _without_logical_types(node: Any) -> Any:
    """Copy of a schema with logicalType removed: we read timestamps as plain integers
    (microseconds or milliseconds, as the field documents) rather than datetime objects."""
    if isinstance(node, dict):
        return {key: _without_logical_types(value) for key, value in node.items() if key != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(item) for item in node]
    return node


def _parse_for_reading(definition: dict[str, Any]) -> Any:
    return fastavro.parse_schema(_without_logical_types(definition), _write_hint=False)


@dataclass(frozen=True)
class ShippedSchema:
    name: str  # record name without namespace, e.g. "Frame"
    definition: dict[str, Any]
    parsed: Any
    parsed_for_reading: Any
    canonical: str
    fingerprint: bytes  # CRC-64-AVRO, little-endian as written in single-object headers


class SchemaCatalog:
    """The Avro schemas shipped in ``schemas/``, one record per ``.avsc`` file."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_schemas_dir()
        files = sorted(self.directory.glob("*.avsc"))
        if not files:
            raise SerdeError(f"no .avsc schemas found in {self.directory} (set {SCHEMAS_DIR_ENV})")
        self._by_name: dict[str, ShippedSchema] = {}
        self._by_fingerprint: dict[bytes, ShippedSchema] = {}
        for path in files:
            schema = self.load_definition(json.loads(path.read_text()))
            self._by_name[schema.name] = schema
            self._by_fingerprint[schema.fingerprint] = schema

    @staticmethod
    def load_definition(definition: dict[str, Any]) -> ShippedSchema:
        parsed = fastavro.parse_schema(definition, _write_hint=False)
        canonical = to_parsing_canonical_form(definition)
        return ShippedSchema(
            name=definition["name"],
            definition=definition,
            parsed=parsed,
            parsed_for_reading=_parse_for_reading(definition),
            canonical=canonical,
            fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        )

    def get(self, name: str) -> ShippedSchema:
        try:
            return self._by_name[name]
        except KeyError:
            raise SerdeError(f"unknown schema {name!r}; shipped: {sorted(self._by_name)}") from None

    def by_fingerprint(self, value: bytes) -> ShippedSchema | None:
        return self._by_fingerprint.get(value)

    def names(self) -> list[str]:
        return sorted(self._by_name)


@lru_cache(maxsize=4)
def shipped_catalog(directory: Path | None = None) -> SchemaCatalog:
    return SchemaCatalog(directory)


def _write_avro(schema: Any, value: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, value)
    return buffer.getvalue()


class AvroSerde:
    """Encodes and decodes pipeline records; ``registry`` None selects single-object encoding."""

    def __init__(self, catalog: SchemaCatalog, registry: Any | None = None, auto_register: bool = True) -> None:
        self.catalog = catalog
        self.registry = registry  # confluent_kafka.schema_registry.SchemaRegistryClient
        self.auto_register = auto_register
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._writer_by_id: dict[int, Any] = {}

    @property
    def framing(self) -> str:
        return "confluent" if self.registry is not None else "single-object"

    def serialize(self, topic: str, schema_name: str, value: dict[str, Any]) -> bytes:
        schema = self.catalog.get(schema_name)
        try:
            body = _write_avro(schema.parsed, value)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise SerdeError(f"{schema_name} record does not match its schema: {error}") from error
        if self.registry is None:
            return SINGLE_OBJECT_MAGIC + schema.fingerprint + body
        return struct.pack(">bI", CONFLUENT_MAGIC, self._schema_id(topic, schema)) + body

    def deserialize(self, topic: str, schema_name: str, data: bytes | None) -> dict[str, Any]:
        if not data:
            raise SerdeError("empty value (a tombstone where a record was expected)")
        reader = self.catalog.get(schema_name)
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            writer = self.catalog.by_fingerprint(data[2:10])
            if writer is None:
                raise SerdeError(
                    f"single-object record with unknown schema fingerprint {data[2:10].hex()} "
                    f"(not one of the shipped schemas in {self.catalog.directory})"
                )
            writer_schema, body = writer.parsed_for_reading, data[10:]
        elif data[0] == CONFLUENT_MAGIC and len(data) >= 5:
            (schema_id,) = struct.unpack(">I", data[1:5])
            writer_schema, body = self._writer_schema(schema_id), data[5:]
        else:
            raise SerdeError(
                f"not an Avro record: first bytes {data[:4].hex()} match neither Confluent framing (00) "
                "nor Avro single-object encoding (c301)"
            )
        try:
            record = fastavro.schemaless_reader(io.BytesIO(body), writer_schema, reader.parsed_for_reading)
        except Exception as error:  # fastavro raises many types on truncated or garbled input
            raise SerdeError(f"cannot decode {schema_name} from {topic}: {type(error).__name__}: {error}") from error
        if not isinstance(record, dict):  # every contract is a record; anything else is a wrong schema
            raise SerdeError(f"{schema_name} from {topic} decoded to {type(record).__name__}, not a record")
        return record

    def register(self, topic: str, schema_name: str) -> int:
        """Register `schema_name` under the topic's subject (what the platform's schema writer does before
        services that may only look schemas up start); returns its id."""
        if self.registry is None:
            raise SerdeError("no schema registry configured (set CCTV_REGISTRY__URL)")
        return self._schema_id(topic, self.catalog.get(schema_name), register=True)

    def _schema_id(self, topic: str, schema: ShippedSchema, register: bool | None = None) -> int:
        subject = f"{topic}-value"
        key = (subject, schema.canonical)
        schema_id = self._ids.get(key)
        if schema_id is not None:
            return schema_id
        from confluent_kafka.schema_registry import Schema

        registry = self.registry
        assert registry is not None, "registry framing without a registry client"
        registry_schema = Schema(json.dumps(schema.definition), "AVRO")
        with self._lock:  # many threads (e.g. one per camera) may want the same subject at once
            if key in self._ids:
                return self._ids[key]
            last_error: Exception | None = None
            for _attempt in range(3):
                try:
                    if self.auto_register if register is None else register:
                        self._ids[key] = registry.register_schema(subject, registry_schema)
                    else:
                        self._ids[key] = registry.lookup_schema(subject, registry_schema).schema_id
                    return self._ids[key]
                except Exception as error:  # noqa: BLE001 - the registry client raises many types
                    # Another process may have registered the same schema a moment ago (409 on first
                    # creation of the subject): look it up before giving up.
                    last_error = error
                    try:
                        self._ids[key] = registry.lookup_schema(subject, registry_schema).schema_id
                        return self._ids[key]
                    except Exception:  # noqa: BLE001 - retried, and reported below if it persists
                        time.sleep(0.2)
            raise SerdeError(f"schema registry refused {schema.name} for subject {subject}: {last_error}")

    def _writer_schema(self, schema_id: int) -> Any:
        if schema_id not in self._writer_by_id:
            if self.registry is None:
                raise SerdeError(
                    f"record carries registry schema id {schema_id} but no registry is configured "
                    "(set CCTV_REGISTRY__URL)"
                )
            try:
                registered = self.registry.get_schema(schema_id)
            except Exception as error:
                raise SerdeError(f"schema id {schema_id} not found in the registry: {error}") from error
            self._writer_by_id[schema_id] = _parse_for_reading(json.loads(registered.schema_str))
        return self._writer_by_id[schema_id]


def registry_client(settings: RegistrySettings) -> Any | None:
    if not settings.url:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    config: dict[str, Any] = {"url": settings.url}
    if settings.username and settings.password:
        config["basic.auth.user.info"] = f"{settings.username}:{settings.password.get_secret_value()}"
    if settings.ssl_ca_location:
        config["ssl.ca.location"] = settings.ssl_ca_location
    return SchemaRegistryClient(config)


def make_serde(settings: RegistrySettings, catalog: SchemaCatalog | None = None) -> AvroSerde:
    return AvroSerde(catalog or shipped_catalog(), registry_client(settings), settings.auto_register)
