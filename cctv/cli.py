"""`cctv` — the command line for operators, SREs and developers.

Every command talks to the Kafka (and registry) named by flags or the usual CCTV_* environment.
"""

from __future__ import annotations

import sys
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from libs.settings import CommonSettings, ConfigError, load_settings

app = typer.Typer(help="City-scale intelligent CCTV platform.", no_args_is_help=True, add_completion=False)
kafka_app = typer.Typer(help="The local single-node Kafka broker (KRaft) for development and tests.", no_args_is_help=True)
registry_app = typer.Typer(help="The local schema registry (Apicurio, Confluent-compatible API).", no_args_is_help=True)
topics_app = typer.Typer(help="The pipeline's topics.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(registry_app, name="registry")
app.add_typer(topics_app, name="topics")
cameras_app = typer.Typer(help="The camera inventory (compacted topic cctv.cameras.v1).", no_args_is_help=True)
app.add_typer(cameras_app, name="cameras")

console = Console()
err_console = Console(stderr=True)

BootstrapOption = Annotated[
    Optional[str], typer.Option("--bootstrap", "-b", help="Kafka host:port (default: CCTV_KAFKA__BOOTSTRAP_SERVERS)")
]


def settings(bootstrap: str | None = None) -> CommonSettings:
    try:
        loaded = load_settings(CommonSettings)
    except ConfigError as error:
        err_console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    if bootstrap:
        loaded.kafka.bootstrap_servers = bootstrap
    if loaded.registry.url is None:
        from cctv.devstack.registry import dev_stack_registry_url

        local = dev_stack_registry_url(loaded.kafka.bootstrap_servers)
        if local is not None:  # beside `make run`: its services frame records with this registry
            loaded.registry.url = local
            err_console.print(f"[dim]using the local schema registry {local} (CCTV_REGISTRY__URL overrides)[/dim]")
    return loaded


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _server_commands(group: typer.Typer, title: str, default_port: int, make: Callable[[int], Any],
                     address: Callable[[Any], str]) -> None:
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
        """Stop the server started by `start` (by its PID file)."""
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


DestinationsOption = Annotated[
    Optional[list[str]], typer.Option("--destination", "-d", help="Agency destinations (repeatable).")
]


@topics_app.command("create")
def topics_create(
    bootstrap: BootstrapOption = None,
    destination: DestinationsOption = None,
    scale: Annotated[int, typer.Option(min=1, help="Multiply per-camera partitions (12 x scale).")] = 1,
    replication_factor: Annotated[int, typer.Option(help="-1 = broker default.")] = -1,
) -> None:
    """Create every pipeline topic that is missing (idempotent)."""
    from libs.kafka import create_topics, wait_for_broker
    from libs.topics import DEFAULT_DESTINATIONS, pipeline_topics

    config = settings(bootstrap)
    try:
        wait_for_broker(config.kafka, timeout_s=30)
        specs = pipeline_topics(tuple(destination or DEFAULT_DESTINATIONS), scale=scale)
        outcome = create_topics(config.kafka, specs, replication_factor)
    except Exception as error:  # broker unreachable, ACL denied, bad config
        fail(f"{type(error).__name__}: {error}")
    table = Table("topic", "partitions", "result", "config")
    for spec in specs:
        table.add_row(spec.name, str(spec.partitions), outcome[spec.name],
                      ", ".join(f"{k}={v}" for k, v in spec.config.items()))
    console.print(table)


@topics_app.command("check")
def topics_check(bootstrap: BootstrapOption = None, destination: DestinationsOption = None) -> None:
    """Exit non-zero if the broker is unreachable or any pipeline topic is missing (used by `helm test`)."""
    from libs.kafka import missing_topics, wait_for_broker
    from libs.topics import DEFAULT_DESTINATIONS, pipeline_topics

    config = settings(bootstrap)
    try:
        wait_for_broker(config.kafka, timeout_s=30)
        names = [spec.name for spec in pipeline_topics(tuple(destination or DEFAULT_DESTINATIONS))]
        missing = missing_topics(config.kafka, names)
    except Exception as error:
        fail(f"{type(error).__name__}: {error}")
    if missing:
        fail("missing topics: " + ", ".join(missing) + " (run `cctv topics create`)")
    console.print(f"all {len(names)} pipeline topics present on {config.kafka.bootstrap_servers}")


def _publish_file(path: Path, bootstrap: str | None, prune: bool) -> None:
    from cctv.inventory import InventoryError, load_file, publish, read_inventory
    from libs.serde import make_serde

    try:
        entries = load_file(path)
    except InventoryError as error:
        err_console.print(f"[red]{path}: {len(error.errors)} invalid entries, nothing published:[/red]")
        for problem in error.errors:
            err_console.print(f"  {path}:{problem}")
        raise typer.Exit(1) from None
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror}")
    config = settings(bootstrap)
    serde = make_serde(config.registry)
    remove: list[str] = []
    if prune:
        wanted = {entry.camera_id for entry in entries}
        remove = sorted(set(read_inventory(config.kafka, serde)) - wanted)
    try:
        count = publish(config.kafka, serde, entries, remove)
    except Exception as error:
        fail(f"publishing failed, nothing was committed: {type(error).__name__}: {error}")
    console.print(f"published {len(entries)} cameras" + (f", removed {len(remove)}" if remove else "")
                  + f" to {config.kafka.bootstrap_servers} ({count} records, one transaction)")


@cameras_app.command("apply")
def cameras_apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="YAML file with a top-level 'cameras:' list.")],
    bootstrap: BootstrapOption = None,
    prune: Annotated[bool, typer.Option(help="Remove cameras that are not in the file.")] = False,
) -> None:
    """Validate every camera of a YAML file, then publish all of them in one transaction (or none)."""
    _publish_file(file, bootstrap, prune)


@cameras_app.command("import")
def cameras_import(
    file: Annotated[Path, typer.Argument(help="CSV: camera_id,name,site_id,stream_url,lat,lon,tags,sampling,...")],
    bootstrap: BootstrapOption = None,
) -> None:
    """Validate every row of a CSV inventory, then publish all of them in one transaction (or none)."""
    _publish_file(file, bootstrap, prune=False)


@cameras_app.command("delete")
def cameras_delete(camera_ids: Annotated[list[str], typer.Argument(help="Camera ids to remove.")],
                   bootstrap: BootstrapOption = None) -> None:
    """Remove cameras (tombstones on the compacted inventory topic)."""
    from cctv.inventory import publish
    from libs.serde import make_serde

    config = settings(bootstrap)
    publish(config.kafka, make_serde(config.registry), [], camera_ids)
    console.print(f"removed {len(camera_ids)} cameras")


@cameras_app.command("list")
def cameras_list(bootstrap: BootstrapOption = None,
                 tag: Annotated[Optional[str], typer.Option(help="Only cameras with this tag.")] = None) -> None:
    """Show the current inventory as a table (stream URLs with credentials redacted)."""
    from cctv.inventory import read_inventory
    from libs.redact import redact_url
    from libs.serde import make_serde

    config = settings(bootstrap)
    try:
        cameras = read_inventory(config.kafka, make_serde(config.registry))
    except Exception as error:
        fail(f"{type(error).__name__}: {error}")
    table = Table("camera", "name", "site", "stream", "tags", "sampling", "zones", "enabled")
    shown = [c for c in sorted(cameras.values(), key=lambda c: c.camera_id) if tag is None or tag in c.tags]
    for camera in shown:
        sampling = camera.sampling.mode + (f" {camera.sampling.fps:g}/s" if camera.sampling.mode == "fps" else "")
        table.add_row(camera.camera_id, camera.name, camera.site_id, redact_url(camera.stream_url),
                      ",".join(camera.tags), sampling, str(len(camera.zones)), "yes" if camera.enabled else "no")
    console.print(table)
    console.print(f"{len(shown)} cameras")


alerts_app = typer.Typer(help="Alerts as control rooms and agencies receive them.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(__import__("cctv.evidence", fromlist=["app"]).app, name="evidence")


@alerts_app.command("tail")
def alerts_tail(
    destination: Annotated[Optional[str], typer.Option("--destination", "-d", help="Agency topic, e.g. police.")] = None,
    snapshots: Annotated[Optional[Path], typer.Option(help="Folder to save evidence snapshots (JPEG) into.")] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest retained alert.")] = False,
    limit: Annotated[int, typer.Option(help="Stop after this many alerts (0 = never).")] = 0,
    idle_exit: Annotated[float, typer.Option(help="Stop after this many seconds without a new alert (0 = never).")] = 0,
    bootstrap: BootstrapOption = None,
) -> None:
    """Follow alerts and print each as a readable line; Ctrl-C stops."""
    from cctv.console import alert_row, follow_alerts, save_snapshot
    from libs.serde import make_serde

    import time as _time

    config = settings(bootstrap)
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
            console.print(f"{time_}  {camera:<16} {event:<28} zone {zone:<14} {severity:<8} "
                          f"-> {destinations:<30} {alert_id}" + (f"  {saved}" if saved else ""))
            seen += 1
            if limit and seen >= limit:
                break
    except KeyboardInterrupt:
        pass
    except Exception as error:
        fail(f"{type(error).__name__}: {error}")


@app.command("status")
def status(
    bootstrap: BootstrapOption = None,
    window: Annotated[float, typer.Option(help="Seconds over which throughput is measured.")] = 3.0,
) -> None:
    """Per service: consumer group state, lag and throughput; per camera: connection status and activity."""
    import time as _time

    from cctv.console import SERVICE_GROUPS, group_lag, local_time, read_compacted
    from libs.serde import make_serde
    from libs.topics import CAMERA_ACTIVITY, CAMERA_STATUS

    config = settings(bootstrap)
    serde = make_serde(config.registry)
    try:
        first = {name: group_lag(config.kafka, *spec) for name, spec in SERVICE_GROUPS.items()}
        _time.sleep(window)  # throughput = committed offsets advanced over the window
        second = {name: group_lag(config.kafka, *spec) for name, spec in SERVICE_GROUPS.items()}
        statuses = read_compacted(config.kafka, serde, CAMERA_STATUS, "CameraStatus")
        activity = read_compacted(config.kafka, serde, CAMERA_ACTIVITY, "CameraActivity")
    except Exception as error:
        fail(f"{type(error).__name__}: {error}")
    services = Table("service", "consumer group", "state", "lag", "records/s", title="Services")
    for name, (group, _topic) in SERVICE_GROUPS.items():
        state, lag, total = second[name]
        rate = (total - first[name][2]) / window
        up = "[green]up[/]" if "stable" in state else f"[red]down[/] {state}"
        services.add_row(name, group, up if "stable" in state else state, "-" if lag is None else str(lag),
                         f"{rate:.1f}" if name != "ingest" else "-")
    console.print(services)
    cameras = Table("camera", "status", "reason", "fps", "kbit/s", "activity", "since", title="Cameras")
    for camera_id in sorted(set(statuses) | set(activity)):
        st, act = statuses.get(camera_id, {}), activity.get(camera_id, {})
        cameras.add_row(camera_id, st.get("state", "?"), (st.get("reason") or "")[:60],
                        f"{st['fps']:.1f}" if st.get("fps") else "-",
                        f"{st['bitrate_bps'] / 1000:.0f}" if st.get("bitrate_bps") else "-",
                        act.get("state", "-"), local_time(act["since"]) if act else "-")
    console.print(cameras)


def _capacity_command() -> None:
    from cctv.capacity import capacity_command

    app.command("capacity")(capacity_command)


_capacity_command()


@app.command("up")
def up(
    cameras: Annotated[Path, typer.Option(help="Camera inventory to publish.")] = Path("samples/cameras.yaml"),
    logs: Annotated[Path, typer.Option(help="Folder for service logs.")] = Path("run/logs"),
    keep_kafka: Annotated[bool, typer.Option(help="Leave Kafka and the registry running after Ctrl-C.")] = False,
    duration: Annotated[float, typer.Option(help="Stop by itself after this many seconds (0 = until Ctrl-C).")] = 0,
) -> None:
    """The whole pipeline on this machine: Kafka, registry, topics, sample cameras, the four services,
    and the live alert table. Ctrl-C stops everything cleanly."""
    from cctv.devstack.up import run_stack

    raise typer.Exit(run_stack(cameras, logs, keep_kafka, duration, console))


@app.command("down")
def down() -> None:
    """Stop the local Kafka and schema registry started by `cctv up` or `cctv kafka start`."""
    from cctv.devstack.kafka import KafkaBroker
    from cctv.devstack.registry import SchemaRegistry

    SchemaRegistry().stop()
    KafkaBroker().stop()
    console.print("stopped")


def main() -> None:
    app(prog_name="cctv")


if __name__ == "__main__":
    sys.exit(main())
