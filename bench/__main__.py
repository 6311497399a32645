"""`python -m bench [--only STAGE ...] [--quick] [--publish]`: measure each stage against its bare limit,
write results JSON, a Markdown table and a chart under run/bench/ (a new set per run), or, with
--publish, update the tracked docs/benchmarks/results.json, README.md and results.png."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from bench.common import (
    BENCH_KAFKA_PORT,
    REPO,
    RESULTS_DIR,
    Result,
    bench_broker,
    machine_description,
    now_iso,
)

STAGES = ("ingest", "frame-sampler", "detector", "kafka", "e2e", "console", "shares")
app = typer.Typer(add_completion=False)
console = Console()


def _steps(quick: bool, only: set[str], detector_batches: int) -> int:
    counts = {
        "ingest": 7 if quick else 10,
        "frame-sampler": 2 if quick else 3,
        "detector": detector_batches + 3,
        "kafka": 6,
        "e2e": 2 if quick else 3,
        "console": 1,
        "shares": 4,
    }
    return sum(count for stage, count in counts.items() if stage in only)


def output_location(results_name: str, publish: bool, stamp: str) -> tuple[Path, str]:
    """Where a run's files go: the tracked docs/benchmarks only when published, else a new set in run/bench/."""
    if publish:
        return RESULTS_DIR, results_name
    return REPO / "run" / "bench", f"{results_name}-{stamp}"


@app.command()
def main(
    only: Annotated[list[str] | None, typer.Option(help=f"stage(s) to run: {', '.join(STAGES)}")] = None,
    quick: Annotated[bool, typer.Option(help="short runs (under ~3 minutes), fewer cameras")] = False,
    merge: Annotated[bool, typer.Option(help="keep earlier results of stages not run now")] = True,
    batches: Annotated[str, typer.Option(help="detector batch sizes, e.g. 1,2,4,8,16,32,64")] = "1,4,8",
    providers: Annotated[
        list[str] | None,
        typer.Option(
            help="detector ONNX Runtime provider(s) in order, e.g. CUDAExecutionProvider; default: best present"
        ),
    ] = None,
    kafka_loop: Annotated[
        bool, typer.Option(help="also run the detector through the real Kafka loop (starts a broker)")
    ] = True,
    results_name: Annotated[
        str,
        typer.Option(help="results file stem under docs/benchmarks (a GPU run keeps its own, e.g. results-gpu-cuda)"),
    ] = "results",
    publish: Annotated[
        bool, typer.Option(help="update the tracked files in docs/benchmarks (default: a new set under run/bench/)")
    ] = False,
) -> None:
    selected = set(only or STAGES)
    unknown = selected - set(STAGES)
    if unknown:
        raise typer.BadParameter(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
    try:
        batch_sizes = sorted({int(part) for part in batches.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter(f"--batches takes comma-separated whole numbers, got {batches!r}") from None
    if not batch_sizes or batch_sizes[0] < 1 or batch_sizes[-1] > 256:
        raise typer.BadParameter(f"--batches must list sizes between 1 and 256, got {batches!r}")
    machine, date = machine_description(), now_iso()
    results: list[Result] = []
    started = time.monotonic()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        overall = progress.add_task("bench", total=_steps(quick, selected, len(batch_sizes)))
        current = progress.add_task("", total=None)

        def step(description: str) -> None:
            if progress.tasks[current].description:
                progress.advance(overall)
            progress.update(current, description=description)
            console.log(description)

        def status(text: str) -> None:
            progress.update(current, description=text)

        if selected & {"ingest", "kafka"} or ("detector" in selected and kafka_loop):
            step(f"starting Kafka on 127.0.0.1:{BENCH_KAFKA_PORT}")
            with bench_broker() as bootstrap:
                if "ingest" in selected:
                    from bench import ingest

                    results += ingest.run(bootstrap, quick, step)
                if "detector" in selected:
                    from bench import detector

                    results += detector.run(bootstrap if kafka_loop else None, quick, step, batch_sizes, providers)
                if "kafka" in selected:
                    from bench import transport

                    results += transport.run(bootstrap, quick, step)
        elif "detector" in selected:  # handler vs bare session.run only: no broker needed
            from bench import detector

            results += detector.run(None, quick, step, batch_sizes, providers)
        if "frame-sampler" in selected:
            from bench import sampler

            results += sampler.run(quick, step)
        if "e2e" in selected:
            from bench import e2e

            plan = [(1, 20.0), (8, 25.0)] if quick else [(1, 45.0), (8, 60.0), (32, 75.0)]
            for cameras, duration in plan:
                step(f"e2e: {cameras} camera(s), 4 services as processes, {duration:.0f} s")
                with bench_broker() as bootstrap:
                    measured = e2e.run_pipeline(bootstrap, cameras, duration, 120.0, status)
                results += e2e.summarise(cameras, measured)
        if "console" in selected:
            from bench import console as console_bench

            duration = 60.0 if quick else 150.0
            step(f"console: 3,609 cameras in the inventory, {duration:.0f} s")
            with bench_broker() as bootstrap:
                measured = console_bench.run(bootstrap, duration, 24, Path("/usr/bin/chromedriver").exists())[0]
            results += console_bench.summarise(measured)
        if "shares" in selected:
            from bench import shares as shares_bench

            with bench_broker() as bootstrap:
                results += shares_bench.run(bootstrap, quick, step)
        progress.advance(overall)
        progress.update(current, description="done")

    entries = [result.as_dict() | {"machine": machine, "date": date, "quick": quick} for result in results]
    published = RESULTS_DIR / f"{results_name}.json"
    if merge and published.exists():  # stages not run now keep their published figures
        entries = [e for e in json.loads(published.read_text()) if e["stage"] not in selected] + entries
    directory, name = output_location(results_name, publish, time.strftime("%Y%m%d-%H%M%S"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(entries, indent=2, ensure_ascii=False) + "\n")
    from bench import report

    report.write(entries, name, directory)
    console.print(report.table(entries))
    console.print(
        f"results in {path} ({time.monotonic() - started:.0f} s)"
        + ("" if publish else "; `make bench BENCH_ARGS=--publish` updates docs/benchmarks")
    )


def run() -> None:
    app()


if __name__ == "__main__":
    run()
