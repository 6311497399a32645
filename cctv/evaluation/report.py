"""`cctv eval` output: one JSON file, a Markdown table, and a bar chart of precision/recall/F1 per type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .runner import ClipRun
from .scoring import EARLY_S, LATE_S, TypeScore


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def report_dict(scores: dict[str, TypeScore], runs: list[ClipRun], model: str, part: str = "report") -> dict[str, Any]:
    return {
        "window_s": {"early": EARLY_S, "late": LATE_S},
        "model": model,
        "part": part,
        "types": [s.as_dict() for s in scores.values()],
        "clips": [
            {
                "clip": r.clip_id,
                "duration_s": r.duration_s,
                "wall_s": r.wall_s,
                "realtime_factor": r.realtime_factor,
                "cpu_s": r.cpu_s,
                "realtime_factor_per_cpu": r.realtime_factor_per_cpu,
                "frames_sampled": r.frames_sampled,
                "detector_ms": r.detector_ms,
                "decode_issues": r.decode_issues,
                "alerts": [{"rule_type": a.rule_type, "zone": a.zone, "at_s": a.at_s} for a in r.alerts],
                "alert_descriptions": r.descriptions,
            }
            for r in runs
        ],
    }


def markdown_table(
    scores: dict[str, TypeScore], runs: list[ClipRun], model: str | None = None, part: str | None = None
) -> str:
    lines = (
        [f"Part: {part} (tune: footage defaults may be chosen on; report: the reported footage)", ""] if part else []
    )
    if model:
        lines += [f"Detector: {model}", ""]
    lines += [
        f"Events count as detected when the alert starts within −{EARLY_S:g} s/+{LATE_S:g} s of the labelled start.",
        "",
        (
            "| event type | TP | FP | FN | repeats | precision | recall | F1 | mean onset delay (s) "
            "| event-free h | false alarms / h |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores.values():
        lines.append(
            f"| {s.event_type} | {s.tp} | {s.fp} | {s.fn} | {s.repeats} | {_number(s.precision)} | "
            f"{_number(s.recall)} | {_number(s.f1)} | {_number(s.mean_onset_delay_s, 1)} | "
            f"{s.event_free_s / 3600:.3f} | {_number(s.false_alarms_per_hour, 1)} |"
        )
    lines += [
        "",
        "| clip | length (s) | frames sampled | wall (s) | × real time | CPU (s) | × real time per CPU-second |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.clip_id} | {r.duration_s:.1f} | {r.frames_sampled} | {r.wall_s:.1f} | {r.realtime_factor:.1f} "
            f"| {r.cpu_s:.1f} | {r.realtime_factor_per_cpu:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(scores: dict[str, TypeScore], path: Path) -> None:
    """Precision, recall and F1 per event type, with the KISA pass line (F1 0.90)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = list(scores)
    figure, axes = plt.subplots(figsize=(max(4.0, 1.6 * len(types) + 2), 3.5))
    width = 0.25
    for offset, (label, values) in enumerate(
        (
            ("precision", [scores[t].precision or 0.0 for t in types]),
            ("recall", [scores[t].recall or 0.0 for t in types]),
            ("F1", [scores[t].f1 or 0.0 for t in types]),
        )
    ):
        axes.bar([i + (offset - 1) * width for i in range(len(types))], values, width, label=label)
    axes.axhline(0.9, color="black", linestyle="--", linewidth=1, label="KISA pass (F1 0.90)")
    axes.set_xticks(range(len(types)), types)
    axes.set_ylim(0, 1.05)
    axes.legend(loc="lower right", fontsize="small")
    axes.set_title("cctv eval: per event type")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_reports(
    out_dir: Path, scores: dict[str, TypeScore], runs: list[ClipRun], model: str, part: str = "report"
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "eval.json", out_dir / "eval.md"]
    written[0].write_text(json.dumps(report_dict(scores, runs, model, part), indent=2) + "\n", encoding="utf-8")
    written[1].write_text(markdown_table(scores, runs, model, part), encoding="utf-8")
    try:
        plot(scores, out_dir / "eval.png")
        written.append(out_dir / "eval.png")
    except ImportError:
        pass  # matplotlib is optional (extra `eval`); the CLI says so
    return written
