"""`cctv eval-marks`: false-alarm statistics from the alerts and the operators' marks on the topics.

Reads cctv.alerts.v1 and cctv.incident-actions.v1 from --since (by record time) to their current ends, or
an export of them (JSON lines, one record per line as the schemas define it: `--alerts-file`,
`--actions-file`); writes marks.json and marks.md like `cctv eval` writes its report. Nothing is written
to Kafka.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .marks import false_alarm_stats, marks_markdown

if TYPE_CHECKING:
    from libs.settings import KafkaSettings, RegistrySettings

DEFAULT_SINCE = "7d"


def read_records(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topic: str,
    record_name: str,
    since_ms: int,
    timeout_s: float = 60.0,
) -> tuple[list[dict[str, Any]], int]:
    """Every record of `topic` written at or after `since_ms` (all when 0), up to the end the topic had when
    reading started; and how many could not be decoded (skipped, counted)."""
    from libs.kafka import read_since
    from libs.serde import make_serde

    return read_since(
        kafka, make_serde(registry), topic, record_name, since_ms or None, f"false-alarm-marks-{record_name}", timeout_s
    )


def read_export(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Records from a JSON-lines export; a line that is not a JSON object with `required` fields is an
    error naming the file and line (an export is a deliberate input: nothing is skipped silently)."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None
        missing = [f for f in required if not isinstance(record, dict) or f not in record]
        if missing:
            raise ValueError(f"{path}:{number}: record lacks {missing}")
        records.append(record)
    return records


ALERT_FIELDS = ("alert_id", "camera_id", "zone_name", "rule_id", "event_type", "started_at")
ACTION_FIELDS = ("action_id", "alert_id", "action", "timestamp")


def marks_command(
    out: Annotated[Path, typer.Option("--out", help="where marks.json and marks.md go")] = Path("eval-out"),
    since: Annotated[
        str, typer.Option(help="start of the period: ISO 8601 time (UTC if no zone) or a duration ago (30m, 24h, 7d)")
    ] = DEFAULT_SINCE,
    until: Annotated[str | None, typer.Option(help="end of the period (same forms; default: now)")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default: settings)")] = None,
    alerts_file: Annotated[
        Path | None, typer.Option(help="Alert records as JSON lines instead of the topic (with --actions-file)")
    ] = None,
    actions_file: Annotated[
        Path | None, typer.Option(help="IncidentAction records as JSON lines instead of the topic")
    ] = None,
) -> None:
    """False alarms per camera / zone / rule from the operators' marks: alerts, marked false, share
    false, false alarms per camera-hour (JSON + Markdown)."""
    from rich.console import Console

    from cctv.cli import settings as cli_settings
    from cctv.ledger import parse_moment
    from libs.topics import ALERTS, INCIDENT_ACTIONS

    errors = Console(stderr=True, soft_wrap=True)
    try:
        since_ms = parse_moment(since)
        until_ms = parse_moment(until) if until else int(time.time() * 1000)
    except ValueError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    if until_ms <= since_ms:
        errors.print(f"[red]error:[/red] --until ({until}) must be after --since ({since})")
        raise typer.Exit(2)
    if (alerts_file is None) != (actions_file is None):
        errors.print("[red]error:[/red] give both --alerts-file and --actions-file, or neither (read the topics)")
        raise typer.Exit(2)
    if alerts_file is not None and actions_file is not None:
        try:
            alerts = read_export(alerts_file, ALERT_FIELDS)
            # As from the topic: actions from the period's start on.
            actions = [a for a in read_export(actions_file, ACTION_FIELDS) if a["timestamp"] >= since_ms]
        except ValueError as error:
            errors.print(f"[red]error:[/red] {error}")
            raise typer.Exit(2) from None
    else:
        loaded = cli_settings(bootstrap)
        alerts, bad_alerts = read_records(loaded.kafka, loaded.registry, ALERTS, "Alert", since_ms)
        # Marks come after their alert: actions are read from the same start.
        actions, bad_actions = read_records(loaded.kafka, loaded.registry, INCIDENT_ACTIONS, "IncidentAction", since_ms)
        for count, topic in ((bad_alerts, ALERTS), (bad_actions, INCIDENT_ACTIONS)):
            if count:
                print(f"warning: {count} undecodable record(s) of {topic} skipped", file=sys.stderr)
    stats = false_alarm_stats(alerts, actions, since_ms, until_ms)
    out.mkdir(parents=True, exist_ok=True)
    (out / "marks.json").write_text(json.dumps(stats.as_dict(), indent=2) + "\n", encoding="utf-8")
    table = marks_markdown(stats)
    (out / "marks.md").write_text(table, encoding="utf-8")
    Console(soft_wrap=True).print(table, markup=False)
    print(f"written: {out / 'marks.json'}, {out / 'marks.md'}")
