"""`cctv status`: per service consumer-group state, lag and throughput; per camera status and activity."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from cctv.commands.common import START_HINT, BootstrapOption, console, fail, settings, show


def status(
    bootstrap: BootstrapOption = None,
    window: Annotated[float, typer.Option(help="Seconds over which throughput is measured.")] = 3.0,
) -> None:
    """Per service: consumer group state, lag and throughput; per camera: connection status and activity."""
    import time as _time

    from cctv.console import SERVICE_GROUPS, group_lag, local_time
    from cctv.inventory import read_inventory
    from libs.kafka import read_compacted
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
