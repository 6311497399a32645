"""Every shipped schema round-trips through the serde, in the single-object framing here and in the
Confluent framing against the real registry in test_registry.py."""

from __future__ import annotations

import math
from typing import Any

import pytest

from libs.serde import SINGLE_OBJECT_MAGIC, AvroSerde, SerdeError, shipped_catalog
from tests.seeded import sample_records, seed_for

CATALOG = shipped_catalog()
EXPECTED = {
    "Alert",
    "AuditRecord",
    "CameraActivity",
    "CameraConfig",
    "CameraStatus",
    "DeadLetter",
    "Detections",
    "Frame",
    "IncidentAction",
    "PlatformEvent",
    "ShareRecord",
    "VideoPacket",
}


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Equality that allows float32 rounding of Avro 'float' fields."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b, strict=False)):
            assert_same(x, y, f"{path}[{index}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_every_contract_is_shipped_documented_and_namespaced() -> None:
    assert set(CATALOG.names()) == EXPECTED

    def undocumented(node: Any, where: str) -> list[str]:
        missing = []
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum") and not node.get("doc"):
                missing.append(where)
            for field in node.get("fields", []):
                if not field.get("doc"):
                    missing.append(f"{where}.{field['name']}")
                missing += undocumented(field["type"], f"{where}.{field['name']}")
            for key in ("items", "values"):
                if key in node:
                    missing += undocumented(node[key], where)
        elif isinstance(node, list):
            for branch in node:
                missing += undocumented(branch, where)
        return missing

    for name in EXPECTED:
        definition = CATALOG.get(name).definition
        assert definition["namespace"] == "cctv.platform.v1"
        assert undocumented(definition, name) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_single_object_round_trip(name: str) -> None:
    serde = AvroSerde(CATALOG)
    for record in sample_records(CATALOG.get(name).parsed, 20, seed_for(name)):
        data = serde.serialize("any-topic", name, record)
        assert data[:2] == SINGLE_OBJECT_MAGIC
        assert data[2:10] == CATALOG.get(name).fingerprint
        assert_same(record, serde.deserialize("any-topic", name, data))


def test_garbage_and_unknown_fingerprints_are_clear_errors() -> None:
    serde = AvroSerde(CATALOG)
    with pytest.raises(SerdeError, match="neither Confluent framing"):
        serde.deserialize("t", "Frame", b"\xff\xfe garbage")
    with pytest.raises(SerdeError, match="unknown schema fingerprint"):
        serde.deserialize("t", "Frame", SINGLE_OBJECT_MAGIC + b"\x01" * 8 + b"\x00")
    with pytest.raises(SerdeError, match="no registry is configured"):
        serde.deserialize("t", "Frame", b"\x00\x00\x00\x00\x07\x02")
    with pytest.raises(SerdeError, match="tombstone"):
        serde.deserialize("t", "Frame", None)
    good = serde.serialize("t", "CameraActivity", sample_records(CATALOG.get("CameraActivity").parsed, 1, seed=7)[0])
    with pytest.raises(SerdeError, match="cannot decode"):
        serde.deserialize("t", "CameraActivity", good[:12])


def test_record_not_matching_schema_is_a_serde_error() -> None:
    serde = AvroSerde(CATALOG)
    with pytest.raises(SerdeError, match="does not match its schema"):
        serde.serialize("t", "CameraActivity", {"camera_id": "c1", "state": "SLEEPING"})
