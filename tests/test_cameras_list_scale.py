"""`cctv cameras list` on a Seoul-wide inventory (issue 20, item 7: 110,000 cameras took 220 s and 1.1 GB):
filtered and paged, from the real broker, in seconds."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from cctv.inventory import publish
from cctv.inventory_list import CameraQuery, page
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import pipeline_topics

SERDE = AvroSerde(shipped_catalog())
CITY_CAMERAS = int(os.environ.get("CCTV_TEST_CITY_CAMERAS", "110000"))


def _records(n: int) -> dict[str, dict]:
    return {
        f"cam-{i:05d}": {
            "camera_id": f"cam-{i:05d}",
            "site_id": f"site-{i % 7}",
            "tags": ["road"] if i % 2 else [],
            "enabled": i % 5 != 0,
        }
        for i in range(n)
    }


def test_pages_follow_each_other_without_gaps_or_repeats() -> None:
    records = _records(1000)
    raw = {k: k.encode() for k in records}
    decoded: list[str] = []

    def decode(value: bytes) -> dict:
        decoded.append(value.decode())
        return records[value.decode()]

    query = CameraQuery(match="cam-000*", limit=30)
    seen: list[str] = []
    while True:
        result = page(raw, decode, query)
        seen += [c["camera_id"] for c in result.cameras]
        if result.next_after is None:
            break
        query = CameraQuery(match="cam-000*", limit=30, after=result.next_after)
    assert seen == [f"cam-{i:05d}" for i in range(100)]
    assert result.matching == 100 and result.total == 1000
    assert len(decoded) == 100, "an id filter decodes only the cameras shown"


def test_field_filters_combine() -> None:
    records = _records(700)
    result = page(
        {k: k.encode() for k in records},
        lambda v: records[v.decode()],
        CameraQuery(site="site-3", tag="road", enabled=True, limit=0),
    )
    expected = [k for k, r in records.items() if r["site_id"] == "site-3" and "road" in r["tags"] and r["enabled"]]
    assert [c["camera_id"] for c in result.cameras] == expected and result.next_after is None
    assert result.matching == len(expected) > 0


def test_city_scale_inventory_lists_fast(kafka_settings: KafkaSettings, unique: str, tmp_path: Path) -> None:
    create_topics(kafka_settings, pipeline_topics())
    rows = ["camera_id,name,site_id,stream_url,tags,sampling"]
    for index in range(CITY_CAMERAS):
        site = index // 4
        rows.append(
            f"c{unique}-{index:06d},Camera {index},site-{site:05d},rtsp://127.0.0.1:9/site{site}/cam{index % 4},"
            f"{'school-zone' if index % 10 == 0 else 'road'},fps:2"
        )
    csv_file = tmp_path / "city.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    env = os.environ | {"CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers, "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cctv.cli", *args], env=env, capture_output=True, text=True, timeout=600, check=False
        )

    imported = cli("cameras", "import", str(csv_file))
    assert imported.returncode == 0, imported.stderr
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.monotonic()
        first = cli("cameras", "list", "--match", f"c{unique}-*", "--tag", "school-zone", "--limit", "25")
        took = time.monotonic() - started
        peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        assert first.returncode == 0, first.stderr
        shown = [line.split("\t")[0] for line in first.stdout.splitlines()[1:]]
        assert shown == [f"c{unique}-{i:06d}" for i in range(0, 250, 10)]
        assert f"of {CITY_CAMERAS // 10} matching" in first.stderr
        assert f"next page: --after c{unique}-000240" in first.stderr
        second = cli(
            "cameras",
            "list",
            "--match",
            f"c{unique}-*",
            "--tag",
            "school-zone",
            "--limit",
            "25",
            "--after",
            f"c{unique}-000240",
        )
        assert [line.split("\t")[0] for line in second.stdout.splitlines()[1:]][:2] == [
            f"c{unique}-000250",
            f"c{unique}-000260",
        ]
        print(f"\n{CITY_CAMERAS} cameras: filtered page listed in {took:.1f} s, CLI peak RSS <= {peak_mb:.0f} MB")
        assert took < 60, f"cameras list took {took:.1f} s"
    finally:
        publish(kafka_settings, SERDE, [], [f"c{unique}-{i:06d}" for i in range(CITY_CAMERAS)])
