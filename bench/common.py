"""What every bench stage shares: results, machine description, CPU accounting, the broker, workers."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "docs" / "benchmarks"
SAMPLE_H264 = REPO / "samples" / "vtest-h264.mp4"
SAMPLE_SUBSTREAM = REPO / "samples" / "vtest-360p15.mp4"
# Own port per checkout when several run side by side (CCTV_BENCH_KAFKA_PORT).
BENCH_KAFKA_PORT = int(os.environ.get("CCTV_BENCH_KAFKA_PORT", "29092"))


@dataclass
class Result:
    """One measurement. `ratio` is service efficiency relative to the bare limit: 1.0 means the service
    does the work as cheaply as the bare loop (throughput: service/bare; cost: bare/service)."""

    stage: str
    metric: str
    unit: str
    service: float | None
    bare: float | None = None
    ratio: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def throughput(cls, stage: str, metric: str, unit: str, service: float, bare: float, **params: Any) -> Result:
        return cls(stage, metric, unit, service, bare, _safe_ratio(service, bare), params)

    @classmethod
    def cost(cls, stage: str, metric: str, unit: str, service: float, bare: float, **params: Any) -> Result:
        return cls(stage, metric, unit, service, bare, _safe_ratio(bare, service), params)

    @classmethod
    def plain(cls, stage: str, metric: str, unit: str, service: float | None, **params: Any) -> Result:
        return cls(stage, metric, unit, service, None, None, params)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _safe_ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def _gpu_name() -> str | None:
    """The NVIDIA GPU(s) as nvidia-smi names them, or None where there is none."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        return None
    return "; ".join(result.stdout.strip().splitlines()) or None


def machine_description() -> dict[str, Any]:
    import onnxruntime

    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "gpu": _gpu_name(),
        "kernel": platform.release(),
    }


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def process_cpu_s() -> float:
    """CPU seconds (user + system) of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pid_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat)


class CpuMeter:
    """CPU seconds and wall seconds of this process between start() and stop()."""

    def __init__(self) -> None:
        self.cpu_s = self.wall_s = 0.0

    def __enter__(self) -> CpuMeter:
        self._cpu, self._wall = process_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cpu_s = process_cpu_s() - self._cpu
        self.wall_s = time.perf_counter() - self._wall


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


@contextmanager
def bench_broker(fresh: bool = True) -> Iterator[str]:
    """A real single-node Kafka for the bench on its own port (fresh data unless told otherwise)."""
    import shutil

    from cctv.devstack.kafka import KafkaBroker

    broker = KafkaBroker(port=BENCH_KAFKA_PORT)
    broker.stop()
    if fresh:
        shutil.rmtree(broker.home / "data", ignore_errors=True)
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def run_worker(function: str, params: dict[str, Any], timeout_s: float = 600) -> dict[str, Any]:
    """Run `bench.<module>:<function>(**params)` in a fresh interpreter, so its CPU accounting is its own.
    The worker prints its result as JSON on the last line of stdout."""
    command = [sys.executable, "-m", "bench.worker", function, json.dumps(params)]
    completed = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, env=os.environ | {"PYTHONUNBUFFERED": "1"}
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench worker {function} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])
