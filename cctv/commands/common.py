"""What every `cctv` command shares: the consoles, settings from environment and flags (with a quick
broker check), tables that stay readable in pipes, and failing with a clear message and exit code."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from libs.settings import CommonSettings, ConfigError, load_settings

console = Console(soft_wrap=True)  # long lines stay whole in pipes and logs
err_console = Console(stderr=True, soft_wrap=True)

BootstrapOption = Annotated[
    str | None, typer.Option("--bootstrap", "-b", help="Kafka host:port (default: CCTV_KAFKA__BOOTSTRAP_SERVERS)")
]


BROKER_TIMEOUT_S = 5.0
START_HINT = (
    "start the local stack with `make run` (or `cctv up`), or point -b / CCTV_KAFKA__BOOTSTRAP_SERVERS "
    "at a running cluster"
)


def settings(bootstrap: str | None = None, require_broker: bool = True) -> CommonSettings:
    """Settings from the environment and flags; by default also checks, within a few seconds, that the
    broker answers (a clear message and exit 3 instead of half a minute of retries and a raw error)."""
    try:
        loaded = load_settings(CommonSettings)
    except ConfigError as error:
        err_console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    if bootstrap:
        loaded.kafka.bootstrap_servers = bootstrap
    if loaded.registry.url is None:
        from cctv.devstack.registry import local_stack_registry_url

        # Beside `make run`, its services frame records with the local registry: the CLI must use it too.
        loaded.registry.url = local_stack_registry_url(loaded.kafka.bootstrap_servers)
    if require_broker:
        check_broker(loaded)
    return loaded


def check_broker(config: CommonSettings) -> None:
    from confluent_kafka.admin import AdminClient

    client_config = config.kafka.client_config() | {"log_level": 0}  # no librdkafka retry chatter
    try:
        AdminClient(client_config).list_topics(timeout=BROKER_TIMEOUT_S)
    except Exception:  # noqa: BLE001 — any failure here means: not reachable
        fail(
            f"cannot reach Kafka at {config.kafka.bootstrap_servers} within {BROKER_TIMEOUT_S:.0f} s; {START_HINT}",
            code=3,
        )


def show(header: list[str], rows: list[list[str]], title: str | None = None) -> None:
    """A table on a terminal (first column never cut or wrapped); tab-separated lines without markup when
    piped, so ids stay whole and scripts can read them. Cells are rich markup: escape() free text."""
    if not console.is_terminal:
        if title:
            print(f"# {title}")
        for row in [header, *rows]:
            print("\t".join(Text.from_markup(cell).plain for cell in row))
        return
    first = max([len(header[0]), *(len(row[0]) for row in rows)])
    table = Table(Column(header[0], no_wrap=True, min_width=first), *header[1:], title=title)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)
