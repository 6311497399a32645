"""What the CLI prints when nobody watches a terminal, and where `make bench` writes: plain functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.__main__ import output_location
from bench.common import RESULTS_DIR
from cctv.console import alert_line

REPO = Path(__file__).resolve().parents[1]


def test_a_piped_alert_line_keeps_the_whole_camera_id_and_no_markup() -> None:
    camera = "seoul-jongno-district-0412-north-gate-substream-02"
    line = alert_line(
        {
            "detected_at": 1_764_460_800_000_000,
            "camera_id": camera,
            "camera_name": "North gate",
            "event_type": "intrusion",
            "kind": "NEW",
            "zone_name": "schoolyard",
            "severity": "HIGH",
            "destinations": ["police"],
            "alert_id": "f7def71e-0c1b-4d4e-9d7e-1c0f3a1b2c3d",
        }
    )
    assert f"{camera} (North gate)" in line and "intrusion (new)" in line and "-> police" in line
    assert "f7def71e-0c1b-4d4e-9d7e-1c0f3a1b2c3d" in line and "[" not in line  # full id, no rich markup


def test_make_bench_writes_a_new_set_unless_asked_to_publish() -> None:
    directory, name = output_location("results", publish=False, stamp="20261130-021500")
    assert directory == REPO / "run" / "bench" and name == "results-20261130-021500"
    assert directory != RESULTS_DIR
    assert output_location("results", publish=True, stamp="x") == (RESULTS_DIR, "results")


def test_unknown_destination_names_the_known_ones_and_the_closest(
    kafka_broker, publish_cameras, tmp_path: Path
) -> None:
    publish_cameras([])  # creates the pipeline topics
    result = subprocess.run(
        [sys.executable, "-m", "cctv.cli", "alerts", "tail", "-d", "polic", "-b", kafka_broker.bootstrap],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "no destination 'polic'" in result.stderr and "did you mean 'police'?" in result.stderr
    assert "fire" in result.stderr and "cctv topics create -d polic" in result.stderr
