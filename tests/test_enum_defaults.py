"""Enum reader defaults: a consumer survives a symbol added after its schema (Avro schema resolution).

The rule-type enum of CameraConfig grows with every wave (weapon, fire_smoke, fall, fighting last). Its
reader default `unknown` lets a reader built on today's schema read a camera written by a newer one;
CameraEntry.from_record then skips just that rule."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import fastavro
import pytest
from fastavro.read import SchemaResolutionError

from libs.cameras import UNKNOWN_RULE_TYPE, CameraEntry

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "camera_config.avsc").read_text())


def _rule_type_enum(schema: dict) -> dict:
    zones = next(f for f in schema["fields"] if f["name"] == "zones")
    rules = next(f for f in zones["type"]["items"]["fields"] if f["name"] == "rules")
    rule_type: dict = next(f for f in rules["type"]["items"]["fields"] if f["name"] == "type")["type"]
    return rule_type


def _future_schema(extra_symbol: str) -> dict:
    """Today's schema as a later release would write it: one more rule type."""
    future = copy.deepcopy(SCHEMA)
    _rule_type_enum(future)["symbols"].append(extra_symbol)
    return future


def _camera(*rules: dict) -> CameraEntry:
    return CameraEntry(
        camera_id="cam-enum",
        stream_url="rtsp://camera.example/stream",
        zones=[
            {"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "rules": list(rules)},
            {"name": "roof", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]], "rules": [{"type": "intrusion"}]},
        ],
    )


def _round_trip(record: dict, writer: dict, reader: dict) -> dict:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(writer), record)
    buffer.seek(0)
    result: dict = fastavro.schemaless_reader(buffer, fastavro.parse_schema(writer), fastavro.parse_schema(reader))
    return result


def test_rule_type_enum_has_a_reader_default_that_is_one_of_its_symbols() -> None:
    enum = _rule_type_enum(SCHEMA)
    assert enum["default"] == UNKNOWN_RULE_TYPE
    assert enum["symbols"][-1] == UNKNOWN_RULE_TYPE


def test_todays_reader_reads_a_newer_rule_type_as_unknown_and_keeps_the_other_rules() -> None:
    record = _camera({"type": "loitering", "min_dwell_s": 30}, {"type": "intrusion"}).to_record(updated_at_ms=1)
    record["zones"][0]["rules"][0]["type"] = "arson"  # a rule type a later release adds
    decoded = _round_trip(record, writer=_future_schema("arson"), reader=SCHEMA)
    assert [r["type"] for r in decoded["zones"][0]["rules"]] == [UNKNOWN_RULE_TYPE, "intrusion"]

    entry = CameraEntry.from_record(decoded)
    assert [[r["type"] for r in z["rules"]] for z in entry.zones] == [["intrusion"], ["intrusion"]]


def test_a_zone_with_only_newer_rule_types_is_dropped_not_the_camera() -> None:
    record = _camera({"type": "intrusion"}).to_record(updated_at_ms=1)
    record["zones"][0]["rules"][0]["type"] = "arson"
    entry = CameraEntry.from_record(_round_trip(record, writer=_future_schema("arson"), reader=SCHEMA))
    assert [z["name"] for z in entry.zones] == ["roof"]


def test_without_the_default_the_same_record_cannot_be_read() -> None:
    """What the default fixes: the reader of the previous wave failed on a new symbol."""
    no_default = copy.deepcopy(SCHEMA)
    del _rule_type_enum(no_default)["default"]
    record = _camera({"type": "intrusion"}).to_record(updated_at_ms=1)
    record["zones"][0]["rules"][0]["type"] = "arson"
    with pytest.raises(SchemaResolutionError, match="arson"):
        _round_trip(record, writer=_future_schema("arson"), reader=no_default)


def test_known_types_are_read_unchanged() -> None:
    record = _camera({"type": "fall"}, {"type": "fighting"}).to_record(updated_at_ms=1)
    decoded = _round_trip(record, writer=SCHEMA, reader=SCHEMA)
    entry = CameraEntry.from_record(decoded)
    assert [r["type"] for r in entry.zones[0]["rules"]] == ["fall", "fighting"]


def test_a_real_registry_accepts_the_evolution_and_a_later_rule_type_only_with_the_default(
    schema_registry, unique: str
) -> None:
    """Apicurio's own Avro compatibility check: today's schema is BACKWARD-compatible with release 0.1.0,
    and a later schema with one more rule type is FORWARD-compatible with today's (today's readers can
    read it) only because of the enum default."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    client = SchemaRegistryClient({"url": schema_registry.url})
    released = (
        Path(__file__).resolve().parents[1] / "schemas" / "released" / "0.1.0" / "camera_config.avsc"
    ).read_text()
    subject = f"test.enum-default.{unique}-value"
    client.register_schema(subject, Schema(released, "AVRO"))
    client.set_compatibility(subject, "BACKWARD")
    client.register_schema(subject, Schema(json.dumps(SCHEMA), "AVRO"))
    assert len(client.get_versions(subject)) == 2

    client.set_compatibility(subject, "FORWARD")
    client.register_schema(subject, Schema(json.dumps(_future_schema("arson")), "AVRO"))
    assert len(client.get_versions(subject)) == 3

    without = copy.deepcopy(SCHEMA)
    del _rule_type_enum(without)["default"]
    strict = f"test.enum-no-default.{unique}-value"
    client.register_schema(strict, Schema(json.dumps(without), "AVRO"))
    client.set_compatibility(strict, "FORWARD")
    future_without = copy.deepcopy(without)
    _rule_type_enum(future_without)["symbols"].append("arson")
    with pytest.raises(SchemaRegistryError, match="arson"):
        client.register_schema(strict, Schema(json.dumps(future_without), "AVRO"))


def test_an_operator_action_newer_than_the_reader_is_read_as_unknown_and_changes_no_incident() -> None:
    from cctv.evaluation.marks import marked_false
    from services.console.incidents import Action

    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "incident_action.avsc").read_text())
    future = copy.deepcopy(schema)
    action_enum = next(f for f in future["fields"] if f["name"] == "action")["type"]
    action_enum["symbols"].append("ESCALATE")  # what a later console might add
    records = [
        {"action_id": "a1", "alert_id": "x", "action": "FALSE_ALARM", "operator": "op", "timestamp": 1},
        {"action_id": "a2", "alert_id": "x", "action": "ESCALATE", "operator": "op", "timestamp": 2},
    ]
    decoded = [_round_trip(record, writer=future, reader=schema) for record in records]
    assert [r["action"] for r in decoded] == ["FALSE_ALARM", "UNKNOWN"]
    assert Action.from_record(decoded[1]).action == "unknown"
    assert marked_false(decoded) == {"x"}  # the unknown action neither marks nor clears
