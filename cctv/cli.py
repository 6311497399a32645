"""`cctv` — the command line for operators, SREs and developers.

Every command talks to the Kafka (and registry) named by flags or the usual CCTV_* environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from libs.settings import CommonSettings, ConfigError, load_settings

app = typer.Typer(help="City-scale intelligent CCTV platform.", no_args_is_help=True, add_completion=False)
kafka_app = typer.Typer(
    help="The local single-node Kafka broker (KRaft) for development and tests.", no_args_is_help=True
)
registry_app = typer.Typer(help="The local schema registry (Apicurio, Confluent-compatible API).", no_args_is_help=True)
topics_app = typer.Typer(help="The pipeline's topics.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(registry_app, name="registry")
app.add_typer(topics_app, name="topics")
cameras_app = typer.Typer(help="The camera inventory (compacted topic cctv.cameras.v1).", no_args_is_help=True)
app.add_typer(cameras_app, name="cameras")

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
        _require_broker(loaded)
    return loaded


def _require_broker(config: CommonSettings) -> None:
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


DestinationsOption = Annotated[
    list[str] | None, typer.Option("--destination", "-d", help="Agency destinations (repeatable).")
]


@topics_app.command("create")
def topics_create(
    bootstrap: BootstrapOption = None,
    destination: DestinationsOption = None,
    scale: Annotated[int, typer.Option(min=1, help="Multiply per-camera partitions (12 x scale).")] = 1,
    replication_factor: Annotated[int, typer.Option(help="-1 = broker default.")] = -1,
    cameras: Annotated[
        int | None,
        typer.Option(
            min=1, help="Size partitions for this many cameras (the largest deployment planned); overrides --scale."
        ),
    ] = None,
) -> None:
    """Create every pipeline topic that is missing (idempotent)."""
    from libs.kafka import create_topics, wait_for_broker
    from libs.topics import DEFAULT_DESTINATIONS, pipeline_topics, scale_for_cameras

    if cameras is not None:
        scale = scale_for_cameras(cameras)
    config = settings(bootstrap)
    try:
        wait_for_broker(config.kafka, timeout_s=30)
        specs = pipeline_topics(tuple(destination or DEFAULT_DESTINATIONS), scale=scale)
        outcome = create_topics(config.kafka, specs, replication_factor)
    except Exception as error:  # noqa: BLE001 — broker unreachable, ACL denied, bad config
        fail(f"{type(error).__name__}: {error}")
    show(
        ["topic", "partitions", "result", "config"],
        [
            [spec.name, str(spec.partitions), outcome[spec.name], ", ".join(f"{k}={v}" for k, v in spec.config.items())]
            for spec in specs
        ],
    )


@topics_app.command("grow")
def topics_grow(
    partitions: Annotated[int, typer.Option(min=1, help="The new partition count.")],
    topic: Annotated[str, typer.Argument(help="A compacted, keyed topic.")] = "cctv.cameras.v1",
    bootstrap: BootstrapOption = None,
) -> None:
    """Add partitions to a compacted keyed topic and move every key the partitioner now places elsewhere, in
    one transaction: no key lost, none in two partitions. Pause writes to the topic while it runs."""
    from cctv.topic_growth import grow_keyed_topic

    config = settings(bootstrap)
    try:
        growth = grow_keyed_topic(config.kafka, topic, partitions)
    except Exception as error:  # noqa: BLE001 — reported to the operator
        fail(f"{type(error).__name__}: {error}")
    console.print(
        f"{topic}: {growth.partitions_before} -> {growth.partitions_after} partitions; "
        f"{growth.moved} of {growth.keys} keys moved to their new partition"
    )


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
    except Exception as error:  # noqa: BLE001 — reported to the operator
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
        err_console.print(f"[red]{path}: {len(error.errors)} problem(s), nothing published:[/red]")
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
    except Exception as error:  # noqa: BLE001 — reported to the operator
        fail(f"publishing failed, nothing was committed: {type(error).__name__}: {error}")
    console.print(
        f"published {len(entries)} cameras"
        + (f", removed {len(remove)}" if remove else "")
        + f" to {config.kafka.bootstrap_servers} ({count} records, one transaction)"
    )


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
def cameras_delete(
    camera_ids: Annotated[list[str], typer.Argument(help="Camera ids to remove.")], bootstrap: BootstrapOption = None
) -> None:
    """Remove cameras (tombstones on the compacted inventory topic); all or none: an unknown id removes nothing."""
    from cctv.inventory import publish, read_inventory
    from libs.serde import make_serde

    config = settings(bootstrap)
    serde = make_serde(config.registry)
    try:
        known = read_inventory(config.kafka, serde)
    except Exception as error:  # noqa: BLE001 — shown to the operator, nothing changed
        fail(f"cannot read the inventory, nothing removed: {type(error).__name__}: {error}")
    unknown = sorted(set(camera_ids) - set(known))
    if unknown:
        fail(
            f"no camera {', '.join(unknown)} in the inventory on {config.kafka.bootstrap_servers}; "
            "nothing removed (`cctv cameras list` shows the inventory)"
        )
    try:
        publish(config.kafka, serde, [], sorted(set(camera_ids)))
    except Exception as error:  # noqa: BLE001 — one transaction: nothing was removed
        fail(f"nothing removed: {type(error).__name__}: {error}")
    console.print(f"removed {len(set(camera_ids))} cameras: {', '.join(sorted(set(camera_ids)))}")


@cameras_app.command("list")
def cameras_list(
    bootstrap: BootstrapOption = None,
    tag: Annotated[str | None, typer.Option(help="Only cameras with this tag.")] = None,
    site: Annotated[str | None, typer.Option(help="Only cameras of this site.")] = None,
    match: Annotated[str | None, typer.Option(help="Only camera ids matching this glob, e.g. 'gangnam-*'.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled / disabled cameras.")
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="Cameras per page (0 = all).")] = 100,
    after: Annotated[str | None, typer.Option(help="Start after this camera id (the next page).")] = None,
) -> None:
    """Show the current inventory as a table, filtered and paged (stream URLs with credentials redacted)."""
    from cctv.inventory_list import CameraQuery, latest_records, page
    from libs.redact import redact_url
    from libs.serde import make_serde
    from libs.topics import CAMERAS

    config = settings(bootstrap)
    serde = make_serde(config.registry)
    query = CameraQuery(match=match, site=site, tag=tag, enabled=enabled, after=after, limit=limit)
    try:
        result = page(latest_records(config.kafka), lambda raw: serde.deserialize(CAMERAS, "CameraConfig", raw), query)
    except Exception as error:  # noqa: BLE001 — reported to the operator
        fail(f"{type(error).__name__}: {error}")
    rows = []
    for camera in result.cameras:
        sampling = camera["sampling"]
        mode = sampling["mode"].lower()
        rows.append(
            [
                camera["camera_id"],
                escape(camera["name"]),
                escape(camera["site_id"]),
                escape(redact_url(camera["stream_url"])),
                escape(",".join(camera["tags"])),
                mode + (f" {sampling['fps']:g}/s" if mode == "fps" and sampling.get("fps") else ""),
                str(len(camera["zones"])),
                "yes" if camera["enabled"] else "no",
            ]
        )
    show(["camera", "name", "site", "stream", "tags", "sampling", "zones", "enabled"], rows)
    footer = f"{len(rows)} cameras shown of {result.matching} matching ({result.total} in the inventory)"
    if result.next_after is not None:
        footer += f"; next page: --after {result.next_after}"
    err_console.print(escape(footer))


alerts_app = typer.Typer(help="Alerts as control rooms and agencies receive them.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(__import__("cctv.evidence", fromlist=["app"]).app, name="evidence")
app.add_typer(__import__("cctv.ledger", fromlist=["app"]).app, name="audit")


@alerts_app.command("tail")
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


@app.command("status")
def status(
    bootstrap: BootstrapOption = None,
    window: Annotated[float, typer.Option(help="Seconds over which throughput is measured.")] = 3.0,
) -> None:
    """Per service: consumer group state, lag and throughput; per camera: connection status and activity."""
    import time as _time

    from cctv.console import SERVICE_GROUPS, group_lag, local_time, read_compacted
    from cctv.inventory import read_inventory
    from libs.serde import make_serde
    from libs.topics import CAMERA_ACTIVITY, CAMERA_STATUS, PLATFORM_EVENTS

    config = settings(bootstrap)
    serde = make_serde(config.registry)
    try:
        first = {name: group_lag(config.kafka, *spec) for name, spec in SERVICE_GROUPS.items()}
        _time.sleep(window)  # throughput = committed offsets advanced over the window
        second = {name: group_lag(config.kafka, *spec) for name, spec in SERVICE_GROUPS.items()}
        statuses = read_compacted(config.kafka, serde, CAMERA_STATUS, "CameraStatus")
        activity = read_compacted(config.kafka, serde, CAMERA_ACTIVITY, "CameraActivity")
        inventory = read_inventory(config.kafka, serde)
        processes = read_compacted(config.kafka, serde, PLATFORM_EVENTS, "PlatformEvent")
    except Exception as error:  # noqa: BLE001 — e.g. topics missing on this cluster
        fail(f"{type(error).__name__}: {error}")
    if not inventory and not statuses and all(state.startswith("unknown") for state, _, _ in second.values()):
        fail(
            f"nothing to show on {config.kafka.bootstrap_servers}: no service has joined, no camera in the inventory "
            f"and no camera status (is it the right cluster? {START_HINT})"
        )
    services = []
    for name, (group, _topic) in SERVICE_GROUPS.items():
        state, lag, total = second[name]
        rate = (total - first[name][2]) / window
        event = processes.get(name)  # the supervisor's (`cctv up`) latest word on the process
        process = (
            f"{event['event']} {local_time(event['timestamp'] * 1000)}"
            + (f" ({event['restarts']} restarts)" if event["restarts"] else "")
            if event
            else "-"
        )
        services.append(
            [
                name,
                group,
                "[green]up[/]" if "stable" in state else f"[red]down[/] {state}",
                "-" if lag is None else str(lag),
                f"{rate:.1f}" if name != "ingest" else "-",
                process,
            ]
        )
    show(["service", "consumer group", "state", "lag", "records/s", "process"], services, title="Services")
    removed = (set(statuses) | set(activity)) - set(inventory)  # deleted cameras keep their last status for days
    cameras = []
    for camera_id in sorted(set(inventory)):
        st, act = statuses.get(camera_id, {}), activity.get(camera_id, {})
        cameras.append(
            [
                camera_id,
                st.get("state", "?"),
                escape((st.get("reason") or "")[:60]),
                f"{st['fps']:.1f}" if st.get("fps") else "-",
                f"{st['bitrate_bps'] / 1000:.0f}" if st.get("bitrate_bps") else "-",
                act.get("state", "-"),
                local_time(act["since"]) if act else "-",
            ]
        )
    show(["camera", "status", "reason", "fps", "kbit/s", "activity", "since"], cameras, title="Cameras")
    if removed:
        console.print(f"[dim]{len(removed)} cameras no longer in the inventory not shown[/]")


def _capacity_command() -> None:
    from cctv.capacity import capacity_command

    app.command("capacity")(capacity_command)


_capacity_command()


def _plan_command() -> None:
    from planner.cli import register

    register(app)


_plan_command()
app.command("eval")(__import__("cctv.evaluation.command", fromlist=["eval_command"]).eval_command)
app.command("eval-marks")(__import__("cctv.evaluation.marks_command", fromlist=["marks_command"]).marks_command)


@app.command("up")
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


@app.command("down")
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


app.add_typer(__import__("cctv.acls_cli", fromlist=["app"]).app, name="acls")  # defined last: it imports this module


def main() -> None:
    app(prog_name="cctv")


if __name__ == "__main__":
    main()
