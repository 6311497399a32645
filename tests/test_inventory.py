"""`cctv cameras apply|import|list|delete` against the real broker."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cctv.inventory import InventoryError, parse_csv, parse_yaml, read_inventory
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import pipeline_topics

SERDE = AvroSerde(shipped_catalog())

GOOD_YAML = """\
cameras:
  - camera_id: gate-{u}
    name: Main gate
    site_id: site-1
    stream_url: rtsp://127.0.0.1:9/stream1
    credentials_ref: GATE
    location: {{lat: 37.5665, lon: 126.978}}
    tags: [school-zone, Park]
    sampling: {{mode: fps, fps: 2}}
    zones:
      - name: schoolyard
        polygon: [[0.1, 0.5], [0.9, 0.5], [0.9, 0.95], [0.1, 0.95]]
        schedule: {{timezone: Asia/Seoul, windows: [{{days: [mon, tue], start: "22:00", end: "06:00"}}]}}
        rules:
          - {{type: intrusion}}
          - {{type: loitering, min_dwell_s: 45}}
          - {{type: line_crossing, line: [[0.2, 0.6], [0.8, 0.6]], direction: a_to_b}}
  - camera_id: river-{u}
    stream_url: file:///data/river.mp4
    loop: true
"""

BAD_YAML = """\
cameras:
  - camera_id: ok-1
    stream_url: rtsp://127.0.0.1:9/s
  - camera_id: bad url
    stream_url: ftp://10.0.0.7/s
  - camera_id: bowtie
    stream_url: rtsp://127.0.0.1:9/s
    zones:
      - name: yard
        polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]
        rules: [{type: intrusion}]
  - camera_id: ok-1
    stream_url: rtsp://127.0.0.1:9/s
"""


def cli(*args: str, kafka: KafkaSettings, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "cctv.cli", *args], env=env, capture_output=True, text=True, timeout=180, input=stdin
    )


def test_bad_entries_are_rejected_with_line_and_reason() -> None:
    with pytest.raises(InventoryError) as caught:
        parse_yaml(BAD_YAML)
    problems = [str(e) for e in caught.value.errors]
    assert any(p.startswith("line 4 (bad url)") and "camera_id" in p for p in problems), problems
    assert any(p.startswith("line 4 (bad url)") and "stream_url" in p for p in problems), problems
    assert any(p.startswith("line 6 (bowtie)") and "'bowtie'" in p and "'yard'" in p for p in problems), problems
    assert any(p.startswith("line 12 (ok-1)") and "duplicate" in p and "line 2" in p for p in problems), problems


def test_csv_rows_are_validated_with_line_numbers() -> None:
    text = (
        "camera_id,name,site_id,stream_url,lat,lon,tags,sampling\n"
        "c1,One,s1,rtsp://h/1,37.1,127.1,park;riverside,fps:1\n"
        "c2,Two,s1,rtsp://h/2,137.1,127.1,,keyframes\n"
        "c3,Three,s1,rtsp://h/3,,,,every-frame\n"
    )
    with pytest.raises(InventoryError) as caught:
        parse_csv(text)
    problems = [str(e) for e in caught.value.errors]
    assert len(problems) == 2
    assert problems[0].startswith("line 3 (c2)") and "lat" in problems[0]
    assert problems[1].startswith("line 4 (c3)") and "every-frame" in problems[1]
    good = parse_csv(text.splitlines()[0] + "\n" + text.splitlines()[1] + "\n")
    assert good[0].tags == ["park", "riverside"] and good[0].sampling.fps == 1


def test_apply_list_and_delete_round_trip(kafka_settings: KafkaSettings, unique: str, tmp_path: Path) -> None:
    create_topics(kafka_settings, pipeline_topics())
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_YAML.replace("ok-1", f"ok-{unique}"))
    refused = cli("cameras", "apply", "-f", str(bad), kafka=kafka_settings)
    assert refused.returncode == 1 and "nothing published" in refused.stderr
    assert f"ok-{unique}" not in read_inventory(kafka_settings, SERDE)  # not even the valid entry

    good = tmp_path / "good.yaml"
    good.write_text(GOOD_YAML.format(u=unique))
    applied = cli("cameras", "apply", "-f", str(good), kafka=kafka_settings)
    assert applied.returncode == 0, applied.stderr
    inventory = read_inventory(kafka_settings, SERDE)
    gate = inventory[f"gate-{unique}"]
    assert gate.tags == ["park", "school-zone"] and gate.sampling.fps == 2 and gate.credentials_ref == "GATE"
    rules = gate.zones[0]["rules"]
    assert rules[1] == {"type": "loitering", "min_dwell_s": 45.0}
    assert rules[2]["line"] == [[0.2, 0.6], [0.8, 0.6]] and rules[2]["direction"] == "a_to_b"
    assert gate.zones[0]["schedule"]["windows"][0]["start"] == "22:00"

    # The shared test broker may hold other tests' cameras: this test's own ids, then the tag filter.
    listed = cli("cameras", "list", "--tag", "school-zone", "--match", f"*-{unique}", kafka=kafka_settings)
    assert listed.returncode == 0 and f"gate-{unique}" in listed.stdout and f"river-{unique}" not in listed.stdout

    deleted = cli("cameras", "delete", f"gate-{unique}", kafka=kafka_settings)
    assert deleted.returncode == 0
    inventory = read_inventory(kafka_settings, SERDE)
    assert f"gate-{unique}" not in inventory and f"river-{unique}" in inventory
    assert cli("cameras", "delete", f"river-{unique}", kafka=kafka_settings).returncode == 0


def test_district_scale_import(kafka_settings: KafkaSettings, unique: str, tmp_path: Path) -> None:
    """The reference district: 3,609 cameras at 1,141 sites, imported from CSV in one transaction."""
    create_topics(kafka_settings, pipeline_topics())
    rng = random.Random(3609)
    tags = ["park", "riverside", "crime-hotspot", "school-zone", "road"]
    rows = ["camera_id,name,site_id,stream_url,lat,lon,tags,sampling"]
    for index in range(3609):
        site = index % 1141
        # Loopback discard port: nothing is ever contacted, even if an ingest replica pulled these.
        lat, lon, tag = f"{37.5 + rng.random() / 10:.6f}", f"{127.0 + rng.random() / 10:.6f}", rng.choice(tags)
        rows.append(
            f"d{unique}-{index:04d},Camera {index},site-{site:04d},rtsp://127.0.0.1:9/site{site}/cam{index % 4},"
            f"{lat},{lon},{tag},fps:2"
        )
        if index == 2042:  # one row checked field by field after the round trip
            row_2042 = (float(lat), float(lon), tag)
    csv_file = tmp_path / "district.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    imported = cli("cameras", "import", str(csv_file), kafka=kafka_settings)
    assert imported.returncode == 0, imported.stderr
    assert "published 3609 cameras" in imported.stdout
    inventory = read_inventory(kafka_settings, SERDE, timeout_s=60)
    mine = {k: v for k, v in inventory.items() if k.startswith(f"d{unique}-")}
    assert len(mine) == 3609
    assert len({c.site_id for c in mine.values()}) == 1141
    # Every column of a row survives CSV -> Avro -> inventory (row 2042 is at site 2042 % 1141 = 901).
    entry = mine[f"d{unique}-2042"]
    assert (entry.name, entry.site_id, entry.stream_url) == (
        "Camera 2042",
        "site-0901",
        "rtsp://127.0.0.1:9/site901/cam2",
    )
    assert entry.location is not None and (entry.location.lat, entry.location.lon, *entry.tags) == row_2042
    assert (entry.sampling.mode, entry.sampling.fps) == ("fps", 2.0) and entry.enabled
    removed = cli("cameras", "delete", *sorted(mine), kafka=kafka_settings)
    assert removed.returncode == 0, removed.stderr
