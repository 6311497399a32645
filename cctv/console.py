"""Operator views in the terminal: the live alert table and the pipeline status."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.table import Table

from libs.kafka import high_watermark, make_reader, read_compacted, topic_partitions
from libs.serde import AvroSerde, SerdeError
from libs.settings import KafkaSettings
from libs.topics import ALERTS, destination_topic

log = logging.getLogger(__name__)
__all__ = ["read_compacted"]  # `cctv status` reads its views through here

SEVERITY_STYLE = {"LOW": "cyan", "MEDIUM": "yellow", "HIGH": "bold red", "CRITICAL": "bold white on red"}
SERVICE_GROUPS = {  # service → (consumer group, input topic)
    "ingest": ("cctv-ingest", "cctv.cameras.v1"),
    "frame-sampler": ("cctv-frame-sampler", "cctv.video.packets.v1"),
    "detector": ("cctv-detector", "cctv.frames.v1"),
    "alert-router": ("cctv-alert-router", "cctv.detections.v1"),
}


def local_time(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, tz=UTC).astimezone().strftime("%H:%M:%S")


def alert_row(alert: dict[str, Any]) -> list[str]:
    return [
        local_time(alert["detected_at"]),
        alert["camera_name"] or alert["camera_id"],
        f"{alert['event_type']} ({alert['kind'].lower()})",
        alert["zone_name"],
        f"[{SEVERITY_STYLE.get(alert['severity'], '')}]{alert['severity'].lower()}[/]",
        ", ".join(alert["destinations"]) or "-",
        alert["alert_id"][:8],
    ]


def alert_line(alert: dict[str, Any]) -> str:
    """One alert as a plain line (for pipes and logs): full camera id, no colours."""
    time_, _camera, event, zone, _severity, destinations, _id = alert_row(alert)
    camera = alert["camera_id"] + (f" ({alert['camera_name']})" if alert["camera_name"] else "")
    return (
        f"{time_}  {camera}  {event}  zone {zone}  {alert['severity'].lower()}  -> {destinations}  {alert['alert_id']}"
    )


def alert_table(alerts: deque[dict[str, Any]], title: str = "Alerts") -> Table:
    table = Table("time", "camera", "event", "zone", "severity", "destinations", "id", title=title, expand=True)
    for alert in alerts:
        table.add_row(*alert_row(alert))
    return table


def follow_alerts(
    settings: KafkaSettings,
    serde: AvroSerde,
    destination: str | None = None,
    from_beginning: bool = False,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[dict[str, Any] | None]:
    """Yield alerts as they arrive (None on idle polls, so callers can refresh). No group offsets are kept."""
    topic = destination_topic(destination) if destination else ALERTS
    consumer = make_reader(settings, "alerts-tail")
    try:
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in topic_partitions(consumer, topic)])
        while not stop():
            message = consumer.poll(0.5)
            if message is None or message.error() or message.value() is None:
                yield None
                continue
            try:
                yield serde.deserialize(topic, "Alert", message.value())
            except SerdeError as error:
                log.warning(
                    "skipping undecodable alert at %s[%d]@%d: %s", topic, message.partition(), message.offset(), error
                )
                yield None
    finally:
        consumer.close()


def save_snapshot(alert: dict[str, Any], folder: Path) -> Path | None:
    if not alert.get("snapshot_jpeg"):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{alert['alert_id']}-{alert['kind'].lower()}-{alert['sequence']}.jpg"
    path.write_bytes(alert["snapshot_jpeg"])
    return path


def group_lag(settings: KafkaSettings, group: str, topic: str) -> tuple[str, int | None, int]:
    """(state, total lag or None when nothing is committed, committed offset sum)."""
    admin = AdminClient(settings.client_config())
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        state = f"{description.state.name.lower()} ({len(description.members)} members)"
    except Exception as error:  # noqa: BLE001 — group unknown
        state = f"unknown ({type(error).__name__})"
    # The group's committed offsets through a consumer of that group that never joins it (no subscribe, no
    # commit). Not AdminClient.list_consumer_group_offsets: librdkafka crashes (SIGSEGV in
    # rd_kafka_cgrp_op) when a just-started broker answers it with COORDINATOR_LOAD_IN_PROGRESS.
    consumer = make_reader(settings, "lag", **{"group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        lag, total, any_committed = 0, 0, False
        for tp in committed:
            high = high_watermark(consumer, topic, tp.partition)
            if tp.offset >= 0:
                any_committed = True
                lag += max(0, high - tp.offset)
                total += tp.offset
            else:
                lag += high
        return state, (lag if any_committed else None), total
    finally:
        consumer.close()
