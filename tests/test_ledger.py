"""`cctv audit`: filters and CSV through plain functions, then the real command against a real broker."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cctv.ledger import CSV_COLUMNS, parse_moment, select, write_csv
from libs.audit import audit_record
from libs.kafka import create_topics, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import AUDIT, pipeline_topics

SERDE = AvroSerde(shipped_catalog())
HOUR_MS = 3_600_000


def record(actor: str, what: str, camera: str, at_ms: int) -> dict:
    return audit_record(
        actor,
        what,
        allowed=True,
        instance="test",
        role="agency",
        camera_id=camera,
        alert_id=f"alert-{camera}",
        detail="masked=true; faces_masked=1",
        at_ms=at_ms,
    )


def test_moments_are_iso_times_or_durations_ago_and_anything_else_is_refused_clearly() -> None:
    assert parse_moment("2026-11-30T08:00") == parse_moment("2026-11-30T09:00+01:00") == 1_796_025_600_000
    assert parse_moment("24h", now_s=100_000) == (100_000 - 86_400) * 1000
    assert parse_moment("30m", now_s=10_000) == (10_000 - 1_800) * 1000
    with pytest.raises(ValueError, match="duration ago"):
        parse_moment("yesterday")


def test_select_filters_by_agency_camera_act_and_period_and_csv_keeps_every_column() -> None:
    now = 1_800_000_000_000
    records = [
        record("police", "webhook.snapshot", "cam-1", now - 2 * HOUR_MS),
        record("police", "webhook.snapshot.unmasked", "cam-2", now),
        record("fire", "webhook.snapshot", "cam-1", now - HOUR_MS),
        record("alice", "login", "", now),
    ]
    assert [r["what"] for r in select(records, agency="police")] == ["webhook.snapshot", "webhook.snapshot.unmasked"]
    assert [r["actor"] for r in select(records, camera="cam-1")] == ["police", "fire"]
    assert [r["actor"] for r in select(records, what="webhook", since_ms=now - HOUR_MS)] == ["fire", "police"]
    assert select(records, until_ms=now - 2 * HOUR_MS) == []
    out = io.StringIO()
    assert write_csv(select(records, agency="fire"), out) == 1
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS and rows[0]["camera_id"] == "cam-1" and rows[0]["time"].endswith("Z")


def test_cctv_audit_lists_and_exports_the_ledger_of_a_real_broker(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    now = int(time.time() * 1000)
    agency, camera = f"police-{unique}", f"cam-{unique}"
    producer = make_producer(kafka_settings, "test-ledger")
    for rec in (
        record(agency, "webhook.snapshot", camera, now - 3 * HOUR_MS),
        record(agency, "webhook.snapshot.unmasked", camera, now),
        record(f"fire-{unique}", "webhook.snapshot", camera, now - 1000),
    ):
        producer.produce(AUDIT, key=rec["audit_id"], value=SERDE.serialize(AUDIT, "AuditRecord", rec))
    assert producer.flush(30) == 0
    out = tmp_path / "ledger.csv"
    cli = [sys.executable, "-m", "cctv.cli", "audit", "list", "-b", kafka_settings.bootstrap_servers]
    result = subprocess.run(
        [*cli, "--agency", agency, "--since", "1h", "--csv", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["actor"], r["what"], r["camera_id"]) for r in rows] == [(agency, "webhook.snapshot.unmasked", camera)]
    listing = subprocess.run([*cli, "--camera", camera], check=False, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    lines = [line.split("\t") for line in listing.stdout.splitlines()[1:]]
    assert [(line[1], line[2]) for line in lines] == [
        (agency, "webhook.snapshot"),
        (f"fire-{unique}", "webhook.snapshot"),
        (agency, "webhook.snapshot.unmasked"),
    ]  # oldest first
    bad = subprocess.run([*cli, "--since", "last week"], check=False, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "duration ago" in bad.stderr
