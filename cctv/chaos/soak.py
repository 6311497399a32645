"""The soak: the pipeline's four services with many cameras (the sample file looped, N copies) for a long
time, sampling each service's RSS, each consumer group's lag and the alert rate; memory must stay flat.

    python -m cctv.chaos.soak --minutes 30 --cameras 16          # `make soak SOAK_ARGS=...`
    python -m cctv.chaos.soak --minutes 30 --cameras 16 --publish  # also docs/benchmarks/soak.{png,md}

The verdict is the least-squares slope of each service's RSS (MB/min) after the warm-up (model loads,
caches filling), against --max-slope.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cctv.chaos.stack import INPUT_OF, REPO, ChaosStack
from cctv.devstack.services import PIPELINE_SERVICES
from libs.topics import ALERTS


def rss_mb(pid: int) -> float:
    """Resident memory of a process from /proc (Linux), in MB (10^6 bytes)."""
    return parse_vmrss(Path(f"/proc/{pid}/status").read_text())


def parse_vmrss(status: str) -> float:
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value) * 1024 / 1e6
    raise ValueError("no VmRSS line: the process is gone or not a Linux /proc status")


def slope_per_minute(times_s: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of values over time, per minute."""
    if len(times_s) != len(values) or len(times_s) < 2:
        raise ValueError("a slope needs at least two (time, value) samples of equal count")
    n = len(times_s)
    mean_t, mean_v = sum(times_s) / n, sum(values) / n
    spread = sum((t - mean_t) ** 2 for t in times_s)
    if spread == 0:
        raise ValueError("all samples at the same time: no slope")
    return 60.0 * sum((t - mean_t) * (v - mean_v) for t, v in zip(times_s, values, strict=True)) / spread


@dataclass(frozen=True)
class Verdict:
    service: str
    slope_mb_per_min: float
    first_mb: float
    last_mb: float
    passed: bool


def verdicts(rows: list[dict[str, float]], warmup_s: float, max_slope: float) -> list[Verdict]:
    """Per service: slope of RSS over the samples after the warm-up, pass when at most max_slope MB/min."""
    steady = [row for row in rows if row["t_s"] >= warmup_s]
    if len(steady) < 2:
        raise ValueError(f"fewer than two samples after the {warmup_s:g} s warm-up: run longer")
    result = []
    for service in PIPELINE_SERVICES:
        values = [row[f"rss_mb_{service}"] for row in steady]
        slope = slope_per_minute([row["t_s"] for row in steady], values)
        result.append(Verdict(service, slope, values[0], values[-1], slope <= max_slope))
    return result


def lag(stack: ChaosStack, service: str) -> int:
    """Records on the service's input topic its group has not committed yet."""
    ends = stack.end_offsets(INPUT_OF[service])
    from confluent_kafka import TopicPartition

    client = stack._client(f"chaos-{service}")
    try:
        committed = client.committed([TopicPartition(INPUT_OF[service], p) for p in ends], timeout=10)
    finally:
        client.close()
    # The ends are read first: a commit landing in between must not count as negative lag.
    return sum(max(0, ends[tp.partition] - max(tp.offset, 0)) for tp in committed)


def sample(stack: ChaosStack, t_s: float, alerts_before: int, interval_s: float) -> dict[str, float]:
    row: dict[str, float] = {"t_s": round(t_s, 1)}
    for name, service in stack.services.items():
        assert service.pid is not None
        row[f"rss_mb_{name}"] = round(rss_mb(service.pid), 1)
    for name in INPUT_OF:
        row[f"lag_{name}"] = lag(stack, name)
    row["alerts_total"] = sum(stack.end_offsets(ALERTS).values())
    row["alerts_per_min"] = round((row["alerts_total"] - alerts_before) * 60 / interval_s, 1)
    return row


def plot(rows: list[dict[str, float]], result: list[Verdict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [row["t_s"] / 60 for row in rows]
    figure, (memory, lags, alerts) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    slopes = {v.service: v.slope_mb_per_min for v in result}
    for service in PIPELINE_SERVICES:
        label = f"{service} ({slopes[service]:+.2f} MB/min)"
        memory.plot(minutes, [row[f"rss_mb_{service}"] for row in rows], label=label)
    memory.set_ylabel("RSS (MB)")
    memory.legend(fontsize=8)
    memory.set_title(title, fontsize=10)
    for service in INPUT_OF:
        lags.plot(minutes, [row[f"lag_{service}"] for row in rows], label=f"{service} ({INPUT_OF[service]})")
    lags.set_ylabel("consumer lag (records)")
    lags.legend(fontsize=8)
    alerts.plot(minutes, [row["alerts_per_min"] for row in rows], color="tab:red")
    alerts.set_ylabel("alerts / min")
    alerts.set_xlabel("minutes")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def markdown(rows: list[dict[str, float]], result: list[Verdict], args: argparse.Namespace, load: str) -> str:
    table = "\n".join(
        f"| {v.service} | {v.first_mb:.0f} | {v.last_mb:.0f} | {v.slope_mb_per_min:+.3f} | {'pass' if v.passed else 'FAIL'} |"
        for v in result
    )
    last = rows[-1]
    lags = ", ".join(f"{name} {int(last[f'lag_{name}'])}" for name in INPUT_OF)
    return f"""# Soak

`make soak SOAK_ARGS="--minutes {args.minutes:g} --cameras {args.cameras}"`: the four pipeline services as
processes on a broker of their own, {args.cameras} file cameras (the sample looped in real time, {args.fps:g} fps
sampled each), sampled every {args.interval:g} s. Memory slope = least squares over the samples after the
{args.warmup:g} s warm-up; pass at most {args.max_slope:g} MB/min. Load average at the end: {load} on
{os.cpu_count()} cores (a shared machine: other engineers' work ran alongside).

![soak](soak.png)

| service | RSS after warm-up (MB) | RSS at the end (MB) | slope (MB/min) | verdict |
|---|---|---|---|---|
{table}

Lag at the end (records not yet committed): {lags}. Alerts produced: {int(last["alerts_total"])}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cctv.chaos.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("CCTV_SOAK_MINUTES", "30")))
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--fps", type=float, default=0.5, help="frames sampled per camera and second")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=180.0, help="seconds left out of the slope")
    parser.add_argument("--max-slope", type=float, default=1.0, help="MB/min of RSS growth that fails")
    parser.add_argument("--broker-port", type=int, default=int(os.environ.get("CCTV_SOAK_KAFKA_PORT", "19692")))
    parser.add_argument("--out", type=Path, default=REPO / "run" / "soak")
    parser.add_argument("--publish", action="store_true", help="also write docs/benchmarks/soak.{png,md,csv}")
    args = parser.parse_args(argv)
    if args.minutes * 60 <= args.warmup + 2 * args.interval:
        parser.error("--minutes must leave at least two samples after --warmup")
    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    stack = ChaosStack(out, args.broker_port, args.cameras, args.fps, rtsp=False)
    rows: list[dict[str, float]] = []
    try:
        stack.start()
        started, alerts_before = time.monotonic(), 0
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            stack.assert_alive()
            rows.append(sample(stack, elapsed, alerts_before, args.interval))
            alerts_before = int(rows[-1]["alerts_total"])
            print(" ".join(f"{k}={v:g}" for k, v in rows[-1].items()), flush=True)
            time.sleep(max(0.0, started + len(rows) * args.interval - time.monotonic()))  # the sampling period
    finally:
        stack.stop()
        stack.shutdown_broker()
    result = verdicts(rows, args.warmup, args.max_slope)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    targets = [out] + ([REPO / "docs" / "benchmarks"] if args.publish else [])
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        with open(target / "soak.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        title = f"soak: {args.cameras} cameras, {args.minutes:g} min, load {load}"
        plot(rows, result, target / "soak.png", title)
        (target / "soak.md").write_text(markdown(rows, result, args, load))
    for verdict in result:
        print(f"{verdict.service}: {verdict.slope_mb_per_min:+.3f} MB/min {'pass' if verdict.passed else 'FAIL'}")
    print(f"results: {out}")
    return 0 if all(v.passed for v in result) else 1


if __name__ == "__main__":
    sys.exit(main())
