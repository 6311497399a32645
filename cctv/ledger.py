"""`cctv audit`: the release and access ledger (cctv.audit.v1) for auditors and the regulator.

Lists records with filters (agency or actor, camera, act, period) and exports them as CSV. Reads the
topic from the first record at or after --since to its current end; nothing is written. The filtering
core is libs/ledger.py, shared with the console's ledger view.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from libs.ledger import CSV_COLUMNS, iso_ms, parse_moment, read_records, select, write_csv

__all__ = ["CSV_COLUMNS", "app", "parse_moment", "read_ledger", "select", "write_csv"]

app = typer.Typer(help="The release and access ledger (cctv.audit.v1).", no_args_is_help=True)


def read_ledger(bootstrap: str | None, since_ms: int | None, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every AuditRecord from `since_ms` (by record time; all when None) to the topic's current end."""
    from cctv.cli import settings as cli_settings
    from libs.serde import make_serde

    loaded = cli_settings(bootstrap)
    records, undecodable = read_records(loaded.kafka, make_serde(loaded.registry), since_ms, timeout_s)
    if undecodable:
        print(f"warning: {undecodable} undecodable record(s) skipped", file=sys.stderr)
    return records


@app.command("list")
def list_records(
    agency: Annotated[
        str | None, typer.Option(help="Only this actor: an agency (webhook destination) or a user.")
    ] = None,
    camera: Annotated[str | None, typer.Option(help="Only records about this camera id.")] = None,
    what: Annotated[
        str | None, typer.Option(help="Only acts starting with this, e.g. share, webhook, evidence, login.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="From: ISO 8601 time (UTC) or a duration ago: 30m, 24h, 7d.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Until (exclusive): ISO 8601 time or a duration ago.")] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Write CSV to this file ('-' = stdout) instead of a table.")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option("--bootstrap", "-b", help="Kafka host:port.")] = None,
) -> None:
    """List ledger records, oldest first; --csv exports them for the regulator."""
    try:
        since_ms = parse_moment(since) if since else None
        until_ms = parse_moment(until) if until else None
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    chosen = select(
        read_ledger(bootstrap, since_ms), agency=agency, camera=camera, what=what, since_ms=since_ms, until_ms=until_ms
    )
    if csv_out is not None:
        if str(csv_out) == "-":
            count = write_csv(chosen, sys.stdout)
        else:
            with open(csv_out, "w", newline="", encoding="utf-8") as handle:
                count = write_csv(chosen, handle)
        typer.echo(f"{count} record(s) exported", err=True)
        return
    from rich.markup import escape

    from cctv.cli import show

    show(
        ["time", "actor", "what", "outcome", "camera", "alert", "detail"],
        [
            [
                iso_ms(r["timestamp"]),
                escape(r["actor"]),
                escape(r["what"]),
                r["outcome"],
                escape(r.get("camera_id") or ""),
                escape(r.get("alert_id") or ""),
                escape(r.get("detail") or ""),
            ]
            for r in chosen
        ],
    )
    typer.echo(f"{len(chosen)} record(s)", err=True)
