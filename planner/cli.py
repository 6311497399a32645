"""`cctv plan --config plan.yaml --out DIR`: registered on the main CLI by one line in cctv/cli.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def plan_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Plan YAML: layers, candidates, coverage, budget.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for sites.csv/.geojson, map.png/.html, report.md.")],
) -> None:
    """Where the next cameras go: coverage today, blind and hot spots, and new sites chosen by
    maximal covering (MCLP) with existing cameras fixed, plus the set-cover camera count (LSCP)."""
    console, errors = Console(), Console(stderr=True)
    try:
        from planner.config import PlanConfigError, load_config
        from planner.outputs import write_outputs
        from planner.plan import run_plan
    except ImportError as error:
        errors.print(
            f"[red]error:[/red] cctv plan needs the 'plan' extra ({error.name} is missing): pip install -e '.[plan]'",
            highlight=False,
        )
        raise typer.Exit(2) from None
    started = time.perf_counter()
    try:
        plan = load_config(config)
        result = run_plan(plan)
    except PlanConfigError as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False, markup=True)
        raise typer.Exit(2) from None
    written = write_outputs(result, out)
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    sel = result.selection
    before = sum(f.before for f in result.layers) / max(sum(f.total for f in result.layers), 1e-12)
    after = sum(f.after for f in result.layers) / max(sum(f.total for f in result.layers), 1e-12)
    console.print(
        f"{len(sel.sites)} sites chosen ({sel.method}, gap {100 * sel.gap:.3g}%, {sel.solve_s:.1f} s); "
        f"weighted coverage {100 * before:.1f}% -> {100 * after:.1f}%"
    )
    if result.set_cover is not None:
        console.print(
            f"covering everything within reach needs {len(result.set_cover.sites)} new cameras "
            f"({result.set_cover.method})"
        )
    console.print(f"wrote {', '.join(written)} to {out} in {time.perf_counter() - started:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
