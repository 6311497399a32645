"""docs/benchmarks/README.md (table), results.png (ratios and end-to-end latency) and a console table;
or the same files under run/bench/ for a run that is not published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from bench.common import RESULTS_DIR

KEPT_SECTION = "## Profiles"  # written by hand after profiling; preserved when the table is regenerated
SHOWN_PARAMS = (
    "cameras",
    "batch_size",
    "overlap",
    "record",
    "mean_record_bytes",
    "gop_frames",
    "cores_used_service",
    "dropped_packets",
    "alerts",
    "p50_first_third_ms",
    "p50_last_third_ms",
    "lag_at_end",
    "cores_per_service",
    "decode",
    "preprocess",
    "inference",
    "postprocess",
    "records",
    "kafka_ms_per_frame",
    "inference_idle_ms_per_frame",
    "handler_ms_per_frame",
    "frames_published",
    "providers",
    "preprocess_threads",
)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _params(entry: dict[str, Any]) -> str:
    params = entry.get("params", {})
    return "; ".join(f"{key}={_fmt(params[key])}" for key in SHOWN_PARAMS if key in params)


def markdown(entries: list[dict[str, Any]], name: str = "results") -> str:
    machine = entries[0]["machine"] if entries else {}
    lines = [
        "# Benchmarks",
        "",
        "`make bench` measures every stage and, in the same run on the same input, the bare limit of that work.",
        "Options go through `BENCH_ARGS` (`make bench --quick` would be read by make):",
        '`make bench BENCH_ARGS="--quick --only detector"`; stages `ingest|frame-sampler|detector|kafka|e2e`.',
        "Results go to a new set under `run/bench/`; `make bench BENCH_ARGS=--publish` updates these files.",
        "**ratio** = how close the service comes to the bare limit (throughput: service/bare; cost: bare/service;",
        f"1.0 = as cheap as the bare loop). Stages under 0.8 are profiled below. Raw entries: [{name}.json]({name}.json).",
        "",
        f"Machine: {machine.get('cpu_model')}, {machine.get('cores')} cores, Python {machine.get('python')}, "
        f"onnxruntime {machine.get('onnxruntime')} ({', '.join(machine.get('onnxruntime_providers', []))}), "
        f"GPU: {machine.get('gpu') or 'none'}. "
        f"Date: {entries[0]['date'] if entries else ''}{' (quick run)' if entries and entries[0].get('quick') else ''}.",
        "The machine is shared with other work: absolute numbers move by ±20 %; service and bare run back to back.",
        "",
        f"![ratios and end-to-end latency]({name}.png)",
        "",
        "| stage | metric | unit | service | bare | ratio | parameters |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for entry in entries:
        ratio = entry.get("ratio")
        flag = " ⚠" if ratio is not None and ratio < 0.8 else ""
        lines.append(
            f"| {entry['stage']} | {entry['metric']} | {entry['unit']} | {_fmt(entry['service'])} | "
            f"{_fmt(entry['bare'])} | {_fmt(ratio)}{flag} | {_params(entry)} |"
        )
    return "\n".join(lines) + "\n"


def write(entries: list[dict[str, Any]], name: str = "results", directory: Path = RESULTS_DIR) -> None:
    """`results` in docs/benchmarks: README.md + results.png; any other name or directory: NAME.md + NAME.png."""
    readme = directory / ("README.md" if name == "results" and directory == RESULTS_DIR else f"{name}.md")
    kept = ""
    if readme.exists():
        text = readme.read_text()
        if KEPT_SECTION in text:
            kept = "\n" + text[text.index(KEPT_SECTION) :]
    readme.write_text(markdown(entries, name) + kept)
    chart(entries, name, directory)


def chart(entries: list[dict[str, Any]], name: str = "results", directory: Path = RESULTS_DIR) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_ratio = [e for e in entries if e.get("ratio") is not None]
    latency = [e for e in entries if e["stage"] == "e2e" and e.get("service") is not None]
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(16, max(5, 0.28 * len(with_ratio) + 1)), gridspec_kw={"width_ratios": [3, 2]}
    )
    labels = [
        f"{e['stage']}: {e['metric']}"
        + "".join(f" {k}={e['params'][k]}" for k in ("cameras", "batch_size") if k in e["params"])
        for e in with_ratio
    ]
    colours = ["tab:red" if e["ratio"] < 0.8 else "tab:green" for e in with_ratio]
    left.barh(range(len(with_ratio)), [e["ratio"] for e in with_ratio], color=colours)
    left.set_yticks(range(len(with_ratio)), labels, fontsize=7)
    left.invert_yaxis()
    left.axvline(1.0, color="black", linewidth=0.8)
    left.axvline(0.8, color="grey", linestyle="--", linewidth=0.8)
    left.set_xlabel("service / bare limit (1.0 = as cheap as the bare loop)")
    left.set_title("Efficiency against the bare limit")
    by_cameras: dict[int, dict[str, float]] = {}
    for entry in latency:
        quantile = entry["metric"].rsplit(" ", 1)[-1]
        by_cameras.setdefault(entry["params"]["cameras"], {})[quantile] = entry["service"] / 1000
    cameras = sorted(by_cameras)
    width = 0.25
    for offset, quantile in enumerate(("p50", "p95", "p99")):
        right.bar(
            [i + (offset - 1) * width for i in range(len(cameras))],
            [by_cameras[c].get(quantile, 0) for c in cameras],
            width,
            label=quantile,
        )
    right.set_xticks(range(len(cameras)), [f"{c} cameras" for c in cameras])
    right.set_yscale("log")
    right.set_ylabel("capture → alert latency, s (log)")
    right.set_title("End to end (4 services)")
    right.legend()
    figure.tight_layout()
    figure.savefig(directory / f"{name}.png", dpi=110)
    plt.close(figure)


def table(entries: list[dict[str, Any]]) -> Table:
    result = Table(title="bench results (ratio = service vs bare limit)")
    for column in ("stage", "metric", "unit", "service", "bare", "ratio"):
        result.add_column(column, justify="right" if column in ("service", "bare", "ratio") else "left")
    for entry in entries:
        ratio = entry.get("ratio")
        style = "red" if ratio is not None and ratio < 0.8 else None
        extra = "".join(f" {k}={entry['params'][k]}" for k in ("cameras", "batch_size") if k in entry["params"])
        result.add_row(
            entry["stage"],
            entry["metric"] + extra,
            entry["unit"],
            _fmt(entry["service"]),
            _fmt(entry["bare"]),
            _fmt(ratio),
            style=style,
        )
    return result
