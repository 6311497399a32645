"""Schemas evolve BACKWARD_TRANSITIVE-compatibly: each current schema must read data written with every
released version of the same record (Avro schema resolution, as fastavro implements it).

Released versions are frozen under schemas/released/<version>/ (one directory per release, copied from
schemas/ when the release is cut). A schema with no released version yet is new and accepted as is; it
becomes binding once a release directory contains it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest
from fastavro.read import SchemaResolutionError

from tests.seeded import sample_records, seed_for

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = sorted((REPO / "schemas").glob("*.avsc"))
RELEASED_ROOT = REPO / "schemas" / "released"
# Enough samples that every enum symbol and union branch of the writer is drawn (seeded: reproducible).
SAMPLES = 200


def full_name(definition: dict) -> str:
    return f"{definition.get('namespace', '')}.{definition['name']}"


def released_versions() -> dict[str, list[tuple[str, dict]]]:
    """Every released definition by record full name: [(release, definition), ...], oldest release first."""
    by_name: dict[str, list[tuple[str, dict]]] = {}
    releases = sorted(
        (p for p in RELEASED_ROOT.iterdir() if p.is_dir()),
        key=lambda p: [int(part) if part.isdigit() else part for part in p.name.split(".")],
    )
    for release in releases:
        for path in sorted(release.glob("*.avsc")):
            definition = json.loads(path.read_text())
            by_name.setdefault(full_name(definition), []).append((release.name, definition))
    return by_name


RELEASED = released_versions()


def can_read(new: dict, old: dict, samples: int = SAMPLES) -> None:
    """Raise if data written with `old` cannot be read with `new`."""
    writer = fastavro.parse_schema(old)
    reader = fastavro.parse_schema(new)
    for record in sample_records(writer, samples, seed_for(full_name(old))):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, writer, record)
        buffer.seek(0)
        fastavro.schemaless_reader(buffer, writer, reader)
        assert buffer.tell() == len(buffer.getvalue()), "the reader left bytes of the writer's record unread"


def test_a_release_baseline_exists() -> None:
    # Without it every case below would be "new" and pass vacuously.
    assert len(RELEASED) >= 9, sorted(RELEASED)


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_reads_data_of_every_released_version(path: Path) -> None:
    current = json.loads(path.read_text())
    fastavro.parse_schema(current)  # a new schema must at least be valid Avro
    for release, old in RELEASED.get(full_name(current), []):
        try:
            can_read(current, old)
        except Exception as error:  # noqa: BLE001 - any resolution error is the finding, say which release
            pytest.fail(f"{path.name} cannot read data written with release {release}: {error!r}")


def test_no_released_contract_disappears() -> None:
    current = {full_name(json.loads(path.read_text())) for path in SCHEMAS}
    assert sorted(set(RELEASED) - current) == [], "a released record was removed or renamed: consumers still read it"


def test_the_check_catches_incompatible_changes() -> None:
    """The breaking changes wave-2 work could make must each be caught; compatible ones must pass."""
    (_, old), *_ = RELEASED["cctv.platform.v1.CameraActivity"]
    breaking = json.loads(json.dumps(old))
    breaking["fields"].append({"name": "operator", "type": "string", "doc": "no default: incompatible"})
    with pytest.raises(Exception, match="operator"):
        can_read(breaking, old)
    retyped = json.loads(json.dumps(old))
    next(f for f in retyped["fields"] if f["name"] == "motion_score")["type"] = "string"
    with pytest.raises(SchemaResolutionError, match="float is not string"):
        can_read(retyped, old)
    narrowed = json.loads(json.dumps(old))
    state = next(f for f in narrowed["fields"] if f["name"] == "state")
    state["type"]["symbols"] = state["type"]["symbols"][:-1]  # a symbol old writers still send
    with pytest.raises(SchemaResolutionError, match="IDLE not found"):
        can_read(narrowed, old)

    compatible = json.loads(json.dumps(old))
    compatible["fields"].append({"name": "operator", "type": ["null", "string"], "default": None, "doc": "ok"})
    can_read(compatible, old)
    dropped = json.loads(json.dumps(old))
    dropped["fields"] = [f for f in dropped["fields"] if f["name"] != "motion_score"]  # readers may drop fields
    can_read(dropped, old)


def test_a_breaking_change_to_a_shipped_schema_fails_the_parametrized_check(tmp_path: Path) -> None:
    """End to end through the released baseline: Detections gains a required field (what wave-2 might do)."""
    path = REPO / "schemas" / "detections.avsc"
    changed = json.loads(path.read_text())
    changed["fields"].append({"name": "tracker", "type": "string", "doc": "no default: breaks old data"})
    edited = tmp_path / path.name
    edited.write_text(json.dumps(changed))
    with pytest.raises(pytest.fail.Exception, match="release 0.1.0"):
        test_reads_data_of_every_released_version(edited)
