"""`cctv alerts tail`: alerts as control rooms and agencies receive them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cctv.commands.common import BROKER_TIMEOUT_S, BootstrapOption, console, fail, settings
from libs.settings import CommonSettings

app = typer.Typer(help="Alerts as control rooms and agencies receive them.", no_args_is_help=True)


@app.command("tail")
def alerts_tail(
    destination: Annotated[str | None, typer.Option("--destination", "-d", help="Agency topic, e.g. police.")] = None,
    snapshots: Annotated[Path | None, typer.Option(help="Folder to save evidence snapshots (JPEG) into.")] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest retained alert.")] = False,
    limit: Annotated[int, typer.Option(help="Stop after this many alerts (0 = never).")] = 0,
    idle_exit: Annotated[float, typer.Option(help="Stop after this many seconds without a new alert (0 = never).")] = 0,
    bootstrap: BootstrapOption = None,
) -> None:
    """Follow alerts and print each as a readable line; Ctrl-C stops."""
    import time as _time

    from cctv.console import alert_row, follow_alerts, save_snapshot
    from libs.serde import make_serde

    config = settings(bootstrap)
    if destination is not None:
        _check_destination(config, destination)
    seen = 0
    last_alert = _time.monotonic()
    try:
        for alert in follow_alerts(config.kafka, make_serde(config.registry), destination, from_beginning):
            if alert is None:
                if idle_exit and _time.monotonic() - last_alert > idle_exit:
                    break
                continue
            last_alert = _time.monotonic()
            time_, camera, event, zone, severity, destinations, alert_id = alert_row(alert)
            saved = save_snapshot(alert, snapshots) if snapshots else None
            console.print(
                f"{time_}  {camera:<16} {event:<28} zone {zone:<14} {severity:<8} "
                f"-> {destinations:<30} {alert_id}" + (f"  {saved}" if saved else "")
            )
            seen += 1
            if limit and seen >= limit:
                break
    except KeyboardInterrupt:
        pass
    except Exception as error:  # noqa: BLE001 — reported to the operator
        fail(f"{type(error).__name__}: {error}")


def _check_destination(config: CommonSettings, destination: str) -> None:
    """Fail with the destinations that exist (and the closest one) instead of waiting on a missing topic."""
    import difflib

    from confluent_kafka.admin import AdminClient

    from libs.topics import ALERTS, destination_topic

    topics = AdminClient(config.kafka.client_config()).list_topics(timeout=BROKER_TIMEOUT_S).topics
    known = sorted(t.split(".")[2] for t in topics if t.startswith("cctv.alerts.") and t != ALERTS)
    try:
        topic = destination_topic(destination)
    except ValueError as error:
        fail(str(error), 2)
    if topic not in topics:
        close = difflib.get_close_matches(destination, known, n=1)
        fail(
            f"no destination {destination!r} on {config.kafka.bootstrap_servers}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f" Known: {', '.join(known) or 'none'}. A new agency's topic: `cctv topics create -d {destination}`",
            2,
        )
