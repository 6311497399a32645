"""`cctv eval`: the command (registered by one line in cctv/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .annotations import AnnotationError, load_annotations
from .scoring import LabelledEvent, RaisedAlert, TypeScore, score

if TYPE_CHECKING:
    from .runner import ClipRun


def evaluate(
    annotation_file: Path,
    clips_dir: Path,
    model_path: Path | None = None,
    model_format: str | None = None,
    part: str = "report",
    jobs: int = 1,
    input_size: int | None = None,
) -> tuple[dict[str, TypeScore], list[ClipRun], str]:
    """Every annotated clip of `part` (tune, report or all) through the production cores, `jobs` clips at a
    time; scores per event type."""
    from .stages import run_clips

    annotations = load_annotations(annotation_file, clips_dir)
    clips = [c for c in annotations.clips if part in ("all", c.part)]
    if not clips:
        raise AnnotationError(f"{annotation_file} has no clips of part {part!r} (parts: tune, report, all)")
    overrides: dict[str, object] = {}
    if model_path is not None:
        overrides["path"] = model_path
    if model_format is not None:
        overrides["format"] = model_format
    if input_size is not None:
        overrides["input_size"] = input_size
    runs, model_name = run_clips(clips, clips_dir, overrides, jobs)
    events = [LabelledEvent(c.clip_id, e.type, e.start_s, e.end_s, e.zone) for c in clips for e in c.events]
    alerts: list[RaisedAlert] = [a for r in runs for a in r.alerts]
    scored: dict[str, dict[str, float]] = {}
    for clip, run in zip(clips, runs, strict=True):
        for event_type in clip.labelled:
            scored.setdefault(event_type, {})[clip.clip_id] = run.duration_s
    return score(events, alerts, scored), runs, model_name


def eval_command(
    annotations: Annotated[Path, typer.Argument(help="annotation file (YAML, see docs/quality.md)")],
    clips: Annotated[
        Path, typer.Option("--clips", help="directory the annotation's clip names are relative to")
    ] = Path("samples"),
    out: Annotated[Path, typer.Option("--out", help="where eval.json, eval.md and eval.png go")] = Path("eval-out"),
    model: Annotated[Path | None, typer.Option(help="ONNX detector model (default: the detector's default)")] = None,
    model_format: Annotated[str | None, typer.Option(help="centernet, yolo or nanodet")] = None,
    input_size: Annotated[
        int | None, typer.Option(help="detector input side in pixels (default: the detector's; nanodet-g: 416)")
    ] = None,
    part: Annotated[
        str, typer.Option(help="which clips: report (the scored footage), tune (for choosing defaults) or all")
    ] = "report",
    jobs: Annotated[
        int, typer.Option(min=1, help="clips run at once, each in its own process with its share of the CPU threads")
    ] = 1,
) -> None:
    """Run the production cores offline over annotated clips; KISA-style scores per event type."""
    from rich.console import Console

    from .report import markdown_table, write_reports
    from .runner import ClipError

    console = Console(soft_wrap=True)
    try:
        scores, runs, model_name = evaluate(annotations, clips, model, model_format, part, jobs, input_size)
    except (AnnotationError, ClipError, ValueError) as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    written = write_reports(out, scores, runs, model_name, part)
    console.print(markdown_table(scores, runs, model_name, part), markup=False)
    if not any(p.suffix == ".png" for p in written):
        console.print("no plot: install matplotlib (pip install 'cctv-platform[eval]')")
    console.print(f"written: {', '.join(str(p) for p in written)}")
