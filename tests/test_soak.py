"""The soak's arithmetic on its own: RSS read from /proc, least-squares slopes, the verdict per service."""

from __future__ import annotations

import os

import pytest

from cctv.chaos.soak import parse_vmrss, rss_mb, slope_per_minute, verdicts
from cctv.devstack.services import PIPELINE_SERVICES


def test_slope_is_least_squares_per_minute() -> None:
    times = [0.0, 60.0, 120.0, 180.0]
    assert slope_per_minute(times, [100, 102, 104, 106]) == pytest.approx(2.0)
    # Noise around a flat line: slope near zero, whatever the single highest sample.
    assert slope_per_minute(times, [100, 103, 97, 100]) == pytest.approx(-0.6)
    with pytest.raises(ValueError, match="at least two"):
        slope_per_minute([0.0], [1.0])
    with pytest.raises(ValueError, match="same time"):
        slope_per_minute([5.0, 5.0], [1.0, 2.0])


def test_vmrss_parsed_from_proc_status() -> None:
    assert parse_vmrss("Name:\tpython\nVmRSS:\t  204800 kB\nThreads: 3\n") == pytest.approx(209.7152)
    with pytest.raises(ValueError, match="no VmRSS"):
        parse_vmrss("Name:\tzombie\n")
    assert 1 < rss_mb(os.getpid()) < 10_000  # this very test process


def test_verdict_leaves_out_the_warm_up_and_fails_a_leak() -> None:
    rows = []
    for minute in range(10):
        row = {"t_s": minute * 60.0}
        for service in PIPELINE_SERVICES:
            row[f"rss_mb_{service}"] = 100.0 if minute >= 3 else 20.0 * minute  # warm-up: model loading
        row["rss_mb_detector"] = 300.0 + 5.0 * minute  # a leak of 5 MB/min
        rows.append(row)
    result = {v.service: v for v in verdicts(rows, warmup_s=180, max_slope=1.0)}
    assert result["ingest"].passed and result["ingest"].slope_mb_per_min == pytest.approx(0.0)
    assert not result["detector"].passed and result["detector"].slope_mb_per_min == pytest.approx(5.0)
    with pytest.raises(ValueError, match="run longer"):
        verdicts(rows[:4], warmup_s=180, max_slope=1.0)
