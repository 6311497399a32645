"""The local dev stack: `cctv kafka|registry start|stop|status` and `cctv up` / `cctv down`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cctv.commands.common import console, fail

kafka_app = typer.Typer(
    help="The local single-node Kafka broker (KRaft) for development and tests.", no_args_is_help=True
)
registry_app = typer.Typer(help="The local schema registry (Apicurio, Confluent-compatible API).", no_args_is_help=True)


def _server_commands(
    group: typer.Typer, title: str, default_port: int, make: Callable[[int], Any], address: Callable[[Any], str]
) -> None:
    """start / stop / status for a local dev-stack server (broker or registry)."""

    @group.command("start")
    def start(
        port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = default_port,
        timeout: Annotated[float, typer.Option(help="Seconds to wait until it is ready.")] = 180.0,
    ) -> None:
        """Fetch from Maven Central (first time only, then cached), start, and wait until ready."""
        from cctv.devstack.process import DevStackError

        server = make(port)
        try:
            outcome = server.start(timeout_s=timeout)
        except DevStackError as error:
            fail(str(error))
        console.print(f"{title} {outcome}: {address(server)} (log: {server.log_file})")

    @group.command("stop")
    def stop(port: Annotated[int, typer.Option(help="Port of the server to stop.")] = default_port) -> None:
        """Stop the server started by `start` (by its PID file); refused while a `cctv up` uses it."""
        from cctv.devstack.lock import holder

        running = holder(port) if title == "Kafka" else None
        if running is not None:
            fail(f"a `cctv up` (pid {running.get('pid')}) runs on this broker; `cctv down` stops it and its services")
        stopped = make(port).stop()
        console.print(f"{title} stopped" if stopped else f"{title} was not running (no live PID file)")

    @group.command("status")
    def status(port: Annotated[int, typer.Option(help="Port.")] = default_port) -> None:
        """Say whether the server is running; exit 1 if it is not."""
        state = make(port).status()
        console.print(f"{title} on 127.0.0.1:{port}: {state}")
        if state == "stopped":
            raise typer.Exit(1)


def _kafka(port: int) -> Any:
    from cctv.devstack.kafka import KafkaBroker

    return KafkaBroker(port=port)


def _registry(port: int) -> Any:
    from cctv.devstack.registry import SchemaRegistry

    return SchemaRegistry(port=port)


_server_commands(kafka_app, "Kafka", 9092, _kafka, lambda broker: f"bootstrap {broker.bootstrap}")
_server_commands(registry_app, "Schema registry", 8081, _registry, lambda registry: registry.url)


def up(
    cameras: Annotated[
        Path | None, typer.Option(help="Camera inventory to publish (default: samples/cameras.yaml of this checkout).")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Run state: service logs, files for the developer (default: run/ of this checkout)."),
    ] = None,
    keep_kafka: Annotated[bool, typer.Option(help="Leave Kafka and the registry running after Ctrl-C.")] = False,
    duration: Annotated[float, typer.Option(help="Stop by itself after this many seconds (0 = until Ctrl-C).")] = 0,
    service: Annotated[list[str] | None, typer.Option(help="Run only these services (repeatable).")] = None,
    kafka_port: Annotated[int, typer.Option(help="Port of the local broker.")] = 9092,
    registry_port: Annotated[int, typer.Option(help="Port of the local schema registry (0: none).")] = 8081,
    rtsp_port: Annotated[int, typer.Option(help="Port of the sample RTSP camera (0: none).")] = 8554,
    http_port_offset: Annotated[int, typer.Option(help="Added to each service's metrics port (9101...).")] = 0,
) -> None:
    """The whole pipeline on this machine: Kafka, registry, topics, sample cameras, the services (restarted
    if they exit), and the live alert table (plain lines when not on a terminal). Ctrl-C stops it all."""
    from pydantic import ValidationError

    from cctv.devstack.up import StackOptions, run_stack

    given: dict[str, Any] = {
        "kafka_port": kafka_port,
        "registry_port": registry_port,
        "rtsp_port": rtsp_port,
        "http_port_offset": http_port_offset,
        "keep_kafka": keep_kafka,
        "duration_s": duration,
    }
    if cameras is not None:
        given["cameras"] = cameras.resolve()
    if state_dir is not None:
        given["state_dir"] = state_dir.resolve()
    if service:
        given["services"] = service
    try:
        options = StackOptions(**given)
    except ValidationError as error:
        flags = {"services": "service", "duration_s": "duration"}
        fail(
            "; ".join(
                f"--{flags.get(str(e['loc'][0]), str(e['loc'][0])).replace('_', '-')}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in error.errors()
            ),
            2,
        )
    raise typer.Exit(run_stack(options, console))


def down(
    purge: Annotated[
        bool,
        typer.Option(
            help="Also delete broker data, registry database and run state "
            "(cameras, backlog, alerts, logs); downloaded jars stay."
        ),
    ] = False,
    kafka_port: Annotated[int, typer.Option(help="Port of the local broker.")] = 9092,
    registry_port: Annotated[int, typer.Option(help="Port of the local schema registry.")] = 8081,
    state_dir: Annotated[
        Path | None, typer.Option(help="Run state to delete with --purge (default: run/ of this checkout).")
    ] = None,
) -> None:
    """Stop the local stack on these ports, naming each thing stopped: a running `cctv up` (with its
    services), then the Kafka and registry started by `cctv kafka/registry start` or `--keep-kafka`."""
    from cctv.devstack.down import stop_stack

    lines, code = stop_stack(kafka_port, registry_port, purge, state_dir.resolve() if state_dir else None)
    for line in lines:
        console.print(line)
    raise typer.Exit(code)
