"""`cctv topics create|grow|check`: the pipeline's topics."""

from __future__ import annotations

from typing import Annotated

import typer

from cctv.commands.common import BootstrapOption, console, fail, settings, show

app = typer.Typer(help="The pipeline's topics.", no_args_is_help=True)

DestinationsOption = Annotated[
    list[str] | None, typer.Option("--destination", "-d", help="Agency destinations (repeatable).")
]


@app.command("create")
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


@app.command("grow")
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


@app.command("check")
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
