"""Chaos with accounting, short version: two cameras through the four real services on a broker of its own;
each service is killed -9 and restarted in turn, the broker restarted, a camera dropped. Then the topics
say: every sampled frame got exactly one Detections record after dedup, no incident got two NEW or lost
its END, alert ids were stable across the replays. `make chaos` runs the same for longer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cctv.chaos.run import run_chaos
from cctv.chaos.stack import ChaosStack
from cctv.devstack.rtsp import gstreamer_available
from cctv.devstack.services import PIPELINE_SERVICES

PORT = int(os.environ.get("CCTV_TEST_KAFKA_CHAOS_PORT", "19392"))


def test_faults_everywhere_lose_nothing_and_split_no_incident(tmp_path: Path) -> None:
    if not gstreamer_available():
        pytest.fail("GStreamer RTSP server not available: run scripts/install-system-deps.sh (make test does)")
    stack = ChaosStack(tmp_path, PORT, cameras=2, fps=1.0, end_grace_s=10.0)
    run = run_chaos(stack, duration_s=0, steady_s=5)  # one round of faults
    accounting = run.accounting
    assert accounting is not None
    print("\nchaos accounting: " + accounting.line())
    print("faults: " + "; ".join(f"{f['fault']} (back in {f.get('recovered_s')} s)" for f in run.faults))
    # A service that exits by itself is restarted (as cctv up / Kubernetes would) and reported, not hidden.
    for crash in run.crashes:
        print(f"UNPLANNED EXIT: {crash}")
    assert accounting.problems == [], accounting.problems
    assert stack.restarts == dict.fromkeys(PIPELINE_SERVICES, 1)
    assert [f["fault"] for f in run.faults][-2:] == ["broker restarted", "camera chaos-1 dropped (server stopped)"]
    frames, alerts = accounting.frames, accounting.alerts
    assert frames.frames > 20 and frames.detections == frames.frames
    assert alerts.new >= 1 and alerts.new == alerts.incidents  # people walk on the road: incidents, one NEW each
    assert run.exit_codes == dict.fromkeys(PIPELINE_SERVICES, 0), run.exit_codes  # SIGTERM at the end: clean
