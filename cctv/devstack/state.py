"""What state a dev stack starts from, and removing it (`cctv down --purge`, `make reset`)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from confluent_kafka import KafkaException

from cctv.devstack.kafka import KafkaBroker
from cctv.devstack.registry import SchemaRegistry
from libs.serde import AvroSerde
from libs.settings import KafkaSettings

RESET_HINT = "`cctv down --purge` (or `make reset`) starts from nothing"


def describe_state(kafka: KafkaSettings, serde: AvroSerde, wanted: set[str]) -> list[str]:
    """Lines saying what earlier runs left in the broker: cameras beyond `wanted`, backlog per service."""
    from cctv.console import SERVICE_GROUPS
    from cctv.inventory import read_inventory

    inventory = set(read_inventory(kafka, serde, timeout_s=20))
    lines = []
    others = sorted(inventory - wanted)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        lines.append(
            f"[yellow]state from earlier runs: {len(others)} other cameras in the inventory ({shown}); "
            f"ingest pulls them too. {RESET_HINT}[/]"
        )
    backlog = []
    for name, (group, topic) in SERVICE_GROUPS.items():
        lag = _lag(kafka, group, topic)
        if isinstance(lag, str):
            backlog.append(f"{name}: unknown ({lag})")
        elif lag:
            backlog.append(f"{name} {lag} records behind on {topic}")
    if backlog:
        lines.append(
            f"[yellow]backlog from earlier runs: {'; '.join(backlog)}. Alerts from it are not counted "
            f"as this run's; {RESET_HINT}[/]"
        )
    if not lines:
        lines.append("fresh state: no other cameras in the inventory, no backlog")
    return lines


def _lag(kafka: KafkaSettings, group: str, topic: str, attempts: int = 5) -> int | None | str:
    """The group's lag; a just-started broker answers 'coordinator load in progress' for a few seconds."""
    from cctv.console import group_lag

    for attempt in range(attempts):
        try:
            return group_lag(kafka, group, topic)[1]
        except KafkaException as error:
            if attempt == attempts - 1:
                return error.args[0].str() if error.args else str(error)
            time.sleep(1.0)  # retry pause, bounded by `attempts`
    return None


def purge_paths(kafka_port: int, registry_port: int, state_dir: Path) -> list[Path]:
    """Broker data, registry database and run state of one dev stack; the downloaded jars stay."""
    return [KafkaBroker(port=kafka_port).home, SchemaRegistry(port=registry_port).home, state_dir]


def remove(paths: list[Path]) -> list[str]:
    """Delete each existing path; returns lines naming what was removed and its size."""
    removed = []
    for path in paths:
        if not path.exists():
            continue
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removed.append(f"removed {path} ({size / 1e6:.1f} MB)")
    return removed
