"""`cctv audit`: the release and access ledger (cctv.audit.v1) for auditors and the regulator.

Lists records with filters (agency or actor, camera, act, period) and exports them as CSV. Reads the
topic from the first record at or after --since to its current end; nothing is written.
"""

from __future__ import annotations

import csv
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any

import typer

app = typer.Typer(help="The release and access ledger (cctv.audit.v1).", no_args_is_help=True)

CSV_COLUMNS = (
    "time",
    "actor",
    "role",
    "what",
    "outcome",
    "camera_id",
    "alert_id",
    "client_address",
    "detail",
    "console_instance",
    "audit_id",
)
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_moment(text: str, now_s: float | None = None) -> int:
    """Epoch milliseconds of an ISO 8601 time (UTC when no zone is given) or of a duration ago ("30m",
    "24h", "7d"). Raises ValueError with the accepted forms."""
    match = _DURATION.match(text.strip())
    if match:
        now = time.time() if now_s is None else now_s
        return int((now - int(match.group(1)) * _UNIT_S[match.group(2)]) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2026-11-30T08:00) nor a duration ago (30m, 24h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def select(
    records: Iterable[dict[str, Any]],
    *,
    agency: str | None = None,
    camera: str | None = None,
    what: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[dict[str, Any]]:
    """Records matching every given filter, oldest first. `agency` matches the actor (a webhook's
    destination, a console user), `what` is a prefix ("webhook" = every webhook release)."""
    chosen = [
        r
        for r in records
        if (agency is None or r["actor"] == agency)
        and (camera is None or r.get("camera_id") == camera)
        and (what is None or r["what"].startswith(what))
        and (since_ms is None or r["timestamp"] >= since_ms)
        and (until_ms is None or r["timestamp"] < until_ms)
    ]
    return sorted(chosen, key=lambda r: (r["timestamp"], r["audit_id"]))


def iso_ms(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_csv(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for record in records:
        writer.writerow({**record, "time": iso_ms(record["timestamp"])})
        count += 1
    return count


def read_ledger(bootstrap: str | None, since_ms: int | None, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every AuditRecord from `since_ms` (by record time; all when None) to the topic's current end."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from cctv.cli import settings as cli_settings
    from libs.kafka import CatchUp, make_reader, topic_partitions
    from libs.serde import SerdeError, make_serde
    from libs.topics import AUDIT

    loaded = cli_settings(bootstrap)
    serde = make_serde(loaded.registry)
    consumer = make_reader(loaded.kafka, "audit-ledger")
    records: list[dict[str, Any]] = []
    undecodable = 0
    try:
        partitions = topic_partitions(consumer, AUDIT)
        catch_up = CatchUp(consumer, AUDIT)
        catch_up.add(partitions)
        starts = [TopicPartition(AUDIT, p, since_ms if since_ms is not None else OFFSET_BEGINNING) for p in partitions]
        if since_ms is not None:  # skip straight to the period instead of reading a year of records
            starts = [
                tp if tp.offset >= 0 else TopicPartition(AUDIT, tp.partition, OFFSET_BEGINNING)
                for tp in consumer.offsets_for_times(starts, timeout=10)
            ]
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        catch_up.reached()
        while catch_up.pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{AUDIT} not read to its end within {timeout_s:.0f} s")
            for message in consumer.consume(500, 0.5):
                if message.error():
                    continue
                try:
                    records.append(serde.deserialize(AUDIT, "AuditRecord", message.value()))
                except SerdeError:
                    undecodable += 1
            catch_up.reached()
    finally:
        consumer.close()
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
        str | None, typer.Option(help="Only acts starting with this, e.g. webhook, evidence, login.")
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
