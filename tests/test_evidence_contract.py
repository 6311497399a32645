"""Alert.evidence evolves the Alert contract both ways: alerts written before it read with the new schema
(evidence = null), and alerts carrying it still read with the previous schema (old consumers go on)."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import fastavro
import pytest
from fastavro.utils import generate_many

from libs.evidence import clip_id_from_uri, evidence_reference

REPO = Path(__file__).resolve().parents[1]
ALERT = REPO / "schemas" / "alert.avsc"


def schema_without_evidence() -> dict:
    """The newest committed Alert schema that has no evidence field (the contract before clips)."""
    commits = subprocess.run(
        ["git", "log", "--format=%H", "--", "schemas/alert.avsc"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for commit in commits:
        shown = subprocess.run(
            ["git", "show", f"{commit}:schemas/alert.avsc"], cwd=REPO, capture_output=True, text=True, check=False
        )
        if shown.returncode == 0:
            schema = json.loads(shown.stdout)
            if all(field["name"] != "evidence" for field in schema["fields"]):
                return schema
    pytest.fail("no committed Alert schema without the evidence field")


def a_record(schema: dict) -> dict:
    return next(iter(generate_many(fastavro.parse_schema(schema), 1)))


def roundtrip(record: dict, writer: dict, reader: dict) -> dict:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(writer), record)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, fastavro.parse_schema(writer), fastavro.parse_schema(reader))


def test_old_alerts_read_with_the_new_schema_have_no_evidence_and_new_ones_read_with_the_old_schema() -> None:
    old, new = schema_without_evidence(), json.loads(ALERT.read_text())
    field = next(f for f in new["fields"] if f["name"] == "evidence")
    assert field["default"] is None and field["type"][0] == "null"

    old_alert = a_record(old)
    assert roundtrip(old_alert, old, new)["evidence"] is None

    new_alert = a_record(new) | {"evidence": evidence_reference("f7def71e-01")}
    read_by_old_consumer = roundtrip(new_alert, new, old)
    assert "evidence" not in read_by_old_consumer
    assert read_by_old_consumer["alert_id"] == new_alert["alert_id"]
    assert roundtrip(new_alert, new, new)["evidence"] == {
        "clip_id": "f7def71e-01",
        "uri": "cctv-evidence://clips/f7def71e-01",
    }


def test_evidence_uri_names_the_clip() -> None:
    assert clip_id_from_uri(evidence_reference("abc")["uri"]) == "abc"
    with pytest.raises(ValueError, match="not an evidence URI"):
        clip_id_from_uri("https://example.org/abc")
