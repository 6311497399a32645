"""`cctv cameras apply|import|delete|list`: the camera inventory (compacted topic cctv.cameras.v1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cctv.commands.common import BootstrapOption, console, err_console, fail, settings, show

app = typer.Typer(help="The camera inventory (compacted topic cctv.cameras.v1).", no_args_is_help=True)


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


@app.command("apply")
def cameras_apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="YAML file with a top-level 'cameras:' list.")],
    bootstrap: BootstrapOption = None,
    prune: Annotated[bool, typer.Option(help="Remove cameras that are not in the file.")] = False,
) -> None:
    """Validate every camera of a YAML file, then publish all of them in one transaction (or none)."""
    _publish_file(file, bootstrap, prune)


@app.command("import")
def cameras_import(
    file: Annotated[Path, typer.Argument(help="CSV: camera_id,name,site_id,stream_url,lat,lon,tags,sampling,...")],
    bootstrap: BootstrapOption = None,
) -> None:
    """Validate every row of a CSV inventory, then publish all of them in one transaction (or none)."""
    _publish_file(file, bootstrap, prune=False)


@app.command("delete")
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


@app.command("list")
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
