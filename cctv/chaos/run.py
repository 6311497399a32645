"""The fault run: cameras through the whole pipeline while every service is killed -9 in turn, the broker
restarted and a camera dropped; then the topics are read whole and accounted (cctv/chaos/accounting.py).

    python -m cctv.chaos --duration 600 --cameras 4            # `make chaos CHAOS_ARGS=...`
    python -m cctv.chaos --duration 600 --cameras 4 --publish  # also docs/benchmarks/chaos.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cctv.chaos.accounting import Accounting, account
from cctv.chaos.stack import INPUT_OF, REPO, ChaosStack
from cctv.devstack.services import PIPELINE_SERVICES
from libs.topics import VIDEO_PACKETS

RECOVERY_TIMEOUT_S = 300.0


@dataclass
class ChaosRun:
    """What happened (faults with their times and recovery), and what the topics say about it."""

    cameras: int
    fps: float
    end_grace_s: float
    faults: list[dict[str, Any]] = field(default_factory=list)
    accounting: Accounting | None = None
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    crashes: list[dict[str, Any]] = field(default_factory=list)  # services that exited by themselves
    duration_s: float = 0.0
    requested_s: float = 0.0  # --duration: faults go on (whole rounds) until it has passed
    steady_s: float = 0.0

    def report(self) -> dict[str, Any]:
        assert self.accounting is not None
        return {
            "cameras": self.cameras,
            "fps": self.fps,
            "end_grace_s": self.end_grace_s,
            "duration_s": round(self.duration_s, 1),
            "requested_s": self.requested_s,
            "steady_s": self.steady_s,
            "faults": self.faults,
            "exit_codes": self.exit_codes,
            "crashes": self.crashes,
            "load_average": os.getloadavg(),
            "cpu_count": os.cpu_count(),
        } | self.accounting.summary()


def _recovered(stack: ChaosStack, name: str) -> Callable[[], None]:
    """A wait for the service (or, for the broker, every service) to be back at work."""
    if name == "ingest":

        def packets_again() -> None:  # counted from after the kill: the new process's packets
            before = sum(stack.end_offsets(VIDEO_PACKETS).values())
            _until(stack, lambda: sum(stack.end_offsets(VIDEO_PACKETS).values()) > before, name)

        return packets_again
    names = [name] if name in INPUT_OF else list(INPUT_OF)

    def wait() -> None:
        stack.wait_flowing(RECOVERY_TIMEOUT_S)
        for service in names:  # processed everything that was there when it came back
            ends = stack.end_offsets(INPUT_OF[service])
            _until(stack, lambda s=service, e=ends: stack.committed_past(s, e), service)

    return wait


def _until(stack: ChaosStack, condition: Callable[[], bool], what: str) -> None:
    from cctv.chaos.stack import wait_until

    wait_until(lambda: stack.assert_alive() or condition(), RECOVERY_TIMEOUT_S, f"{what} to recover")


def _fault(run: ChaosRun, stack: ChaosStack, started: float, what: str, act: Callable[[], Any]) -> None:
    at = time.monotonic() - started
    print(f"[{at:6.1f} s] {what}", flush=True)
    act()
    run.faults.append({"at_s": round(at, 1), "fault": what})


def run_chaos(stack: ChaosStack, duration_s: float, steady_s: float) -> ChaosRun:
    """At least one full round of faults, more while `duration_s` lasts; then drain and account."""
    run = ChaosRun(stack.cameras, stack.fps, stack.end_grace_s, requested_s=duration_s, steady_s=steady_s)
    started = time.monotonic()
    try:
        stack.start()
        stack.wait_flowing(RECOVERY_TIMEOUT_S)
        print(f"[{time.monotonic() - started:6.1f} s] pipeline flowing", flush=True)
        dropped = False
        while True:
            for name in (*PIPELINE_SERVICES, "broker"):
                stack.assert_alive()
                time.sleep(steady_s)  # the load between faults, not a wait for a condition
                recovered = _recovered(stack, name)
                if name == "broker":
                    _fault(run, stack, started, "broker restarted", stack.restart_broker)
                else:
                    _fault(
                        run, stack, started, f"{name} killed -9 and restarted", lambda n=name: stack.kill_and_restart(n)
                    )
                recovered()
                run.faults[-1]["recovered_s"] = round(time.monotonic() - started - run.faults[-1]["at_s"], 1)
            if not dropped and stack.cameras > 1:
                camera = stack.cameras - 1
                _fault(
                    run,
                    stack,
                    started,
                    f"camera chaos-{camera} dropped (server stopped)",
                    lambda c=camera: stack.drop_camera(c),
                )
                dropped = True
            if time.monotonic() - started >= duration_s:
                break
        print(f"[{time.monotonic() - started:6.1f} s] sources stopped; draining", flush=True)
        stack.stop_sources()
        stack.wait_drained(RECOVERY_TIMEOUT_S)
        frames, detections, alerts = stack.topics_read()
    finally:
        run.exit_codes = stack.stop()
        run.crashes = stack.crashes
        stack.shutdown_broker()
    run.accounting = account(frames, detections, alerts, stack.end_grace_s)
    run.duration_s = time.monotonic() - started
    return run


def markdown(report: dict[str, Any]) -> str:
    frames, alerts = report["frames"], report["alerts"]
    faults = "\n".join(f"| {f['at_s']} | {f['fault']} | {f.get('recovered_s', '-')} |" for f in report["faults"])
    problems = "\n".join(f"- {p}" for p in report["problems"]) or "none"
    crashes = (
        "\n".join(f"- {c['service']} (exit {c['exit']}): {c['last_errors'][-1:]}" for c in report["crashes"]) or "none"
    )
    return f"""# Chaos run with accounting

`make chaos CHAOS_ARGS="--duration {report["requested_s"]:.0f} --cameras {report["cameras"]} --steady {report["steady_s"]:g}"`: {report["cameras"]} RTSP
cameras (the sample looped, {report["fps"]:g} fps sampled) through ingest → frame-sampler → detector → alert-router,
every service killed -9 and restarted in turn, the broker restarted, one camera dropped; then every topic read
whole and accounted (cctv/chaos/accounting.py; what is deduplicated and why: docs/reliability.md).
Run took {report["duration_s"]:.0f} s; load average {", ".join(f"{x:.1f}" for x in report["load_average"])} on
{report["cpu_count"]} cores (a shared, busy machine).

| counted | value |
|---|---|
| frames the sampler published (distinct) | {frames["frames"]} |
| raw duplicate frame records (sampler replays) | {frames["frame_duplicates"]} |
| frames with a Detections record | {frames["detections"]} |
| raw duplicate Detections records (detector replays) | {frames["detection_duplicates"]} |
| frames without Detections (lost) | {frames["missing"]} |
| alert records | {alerts["records"]} |
| raw duplicate alert steps (router replays) | {alerts["duplicates"]} |
| incidents | {alerts["incidents"]} |
| NEW / END | {alerts["new"]} / {alerts["end"]} |
| incidents still open at the end (allowed) | {alerts["still_open"]} |

Problems: {problems}

| at (s) | fault | recovered after (s) |
|---|---|---|
{faults}

Exit codes at the final SIGTERM: {report["exit_codes"]}

Services that exited by themselves (restarted by the run, as a supervisor would): {crashes}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cctv.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of faults (at least one round)")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--fps", type=float, default=1.0, help="frames sampled per camera and second")
    parser.add_argument("--steady", type=float, default=20, help="seconds of plain load before each fault")
    parser.add_argument("--end-grace", type=float, default=10.0, help="the alert-router's incident end grace")
    parser.add_argument("--broker-port", type=int, default=int(os.environ.get("CCTV_CHAOS_KAFKA_PORT", "19592")))
    parser.add_argument("--out", type=Path, default=REPO / "run" / "chaos")
    parser.add_argument("--publish", action="store_true", help="also write docs/benchmarks/chaos.{md,json}")
    args = parser.parse_args(argv)
    if args.cameras < 1:
        parser.error("--cameras must be at least 1")
    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    stack = ChaosStack(out, args.broker_port, args.cameras, args.fps, args.end_grace)
    run = run_chaos(stack, args.duration, args.steady)
    report = run.report()
    targets = [out] + ([REPO / "docs" / "benchmarks"] if args.publish else [])
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        (target / ("chaos.json")).write_text(json.dumps(report, indent=2, default=str) + "\n")
        (target / ("chaos.md")).write_text(markdown(report))
    assert run.accounting is not None
    print(run.accounting.line())
    print(f"report: {out / 'chaos.md'}")
    for problem in run.accounting.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if run.accounting.problems else 0
