"""Publishing and reading the camera inventory (the compacted topic cctv.cameras.v1).

Files are validated completely before anything is sent, and the whole file is published in one Kafka
transaction, so consumers see either all of it or none of it.
"""

from __future__ import annotations

import csv
import io
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Producer
from pydantic import ValidationError

from libs.cameras import CameraEntry, GeoPoint, Sampling
from libs.inventory import InventoryFollower
from libs.serde import AvroSerde
from libs.settings import KafkaSettings
from libs.topics import CAMERAS


@dataclass
class EntryError:
    line: int
    camera_id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" ({self.camera_id})" if self.camera_id else ""
        return f"line {self.line}{who}: {self.reason}"


class InventoryError(Exception):
    def __init__(self, errors: list[EntryError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _explain(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def validate_entry(data: Any, line: int) -> tuple[CameraEntry | None, EntryError | None]:
    from services.alert_router.config import CameraConfig as RuleCameraConfig

    camera_id = data.get("camera_id") if isinstance(data, dict) else None
    if not isinstance(data, dict):
        return None, EntryError(line, None, f"expected a mapping of camera fields, got {type(data).__name__}")
    try:
        entry = CameraEntry.model_validate(data)
        # Zones and rules are checked by the alert-router's own models, so errors here match its errors at start.
        RuleCameraConfig.from_entry(entry)
    except ValidationError as error:
        return None, EntryError(line, camera_id, _explain(error))
    return entry, None


def _validate_all(candidates: list[tuple[int, Any]], errors: list[EntryError]) -> list[CameraEntry]:
    """Validate (line, data) pairs; raise one InventoryError with every problem, duplicates included."""
    entries: list[tuple[int, CameraEntry]] = []
    for line, data in candidates:
        entry, error = validate_entry(data, line)
        if error:
            errors.append(error)
        elif entry is not None:
            entries.append((line, entry))
    first_line: dict[str, int] = {}
    for line, entry in entries:
        if entry.camera_id in first_line:
            errors.append(
                EntryError(line, entry.camera_id, f"duplicate camera_id (first at line {first_line[entry.camera_id]})")
            )
        else:
            first_line[entry.camera_id] = line
    if errors:
        raise InventoryError(sorted(errors, key=lambda e: e.line))
    return [entry for _, entry in entries]


def _yaml_problem(error: yaml.YAMLError) -> EntryError:
    """One readable line: where the construct started, what went wrong and where (PyYAML's own text is
    several lines with '<unicode string>' in each)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return EntryError(0, None, f"not valid YAML: {error}")
    problem = error.problem_mark
    if error.context and error.context_mark is not None:
        start = error.context_mark
        return EntryError(
            start.line + 1,
            None,
            f"not valid YAML: {error.context} (column {start.column + 1}): "
            f"{error.problem} at line {problem.line + 1}, column {problem.column + 1}",
        )
    return EntryError(problem.line + 1, None, f"not valid YAML: {error.problem} (column {problem.column + 1})")


def parse_yaml(text: str) -> list[CameraEntry]:
    """`cameras:` list (or a bare list) of camera mappings; errors carry the item's line number."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InventoryError([_yaml_problem(error)]) from None
    node, items = root, data
    if isinstance(data, dict):
        items = data.get("cameras")
        node = next((v for k, v in root.value if k.value == "cameras"), None) if root is not None else None
    if not isinstance(items, list) or node is None:
        raise InventoryError([EntryError(1, None, "expected a list of cameras under the top-level key 'cameras:'")])
    return _validate_all(
        [(item_node.start_mark.line + 1, item) for item, item_node in zip(items, node.value, strict=False)], []
    )


CSV_COLUMNS = (
    "camera_id",
    "name",
    "site_id",
    "stream_url",
    "lat",
    "lon",
    "tags",
    "sampling",
    "enabled",
    "credentials_ref",
    "rtsp_transport",
)


def parse_csv(text: str) -> list[CameraEntry]:
    """Columns: camera_id,name,site_id,stream_url[,lat,lon,tags(;-separated),sampling(keyframes|fps:N),
    enabled,credentials_ref,rtsp_transport]. Zones need YAML."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in CSV_COLUMNS]
    missing = [c for c in ("camera_id", "stream_url") if c not in header]
    if unknown or missing:
        reasons = []
        if missing:
            reasons.append(f"missing columns {missing}")
        if unknown:
            reasons.append(f"unknown columns {unknown}; known: {', '.join(CSV_COLUMNS)}")
        raise InventoryError([EntryError(1, None, "; ".join(reasons))])
    candidates: list[tuple[int, Any]] = []
    errors: list[EntryError] = []
    for row in reader:
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        try:
            data: dict[str, Any] = {k: values[k] for k in ("camera_id", "name", "site_id", "stream_url") if k in values}
            if values.get("lat") or values.get("lon"):
                data["location"] = GeoPoint(
                    lat=float(values.get("lat") or "nan"), lon=float(values.get("lon") or "nan")
                )
            if values.get("tags"):
                data["tags"] = values["tags"].split(";")
            if values.get("sampling"):
                data["sampling"] = Sampling.parse_short(values["sampling"])
            if values.get("enabled"):
                flag = values["enabled"].lower()
                if flag not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(f"enabled must be true or false, got {values['enabled']!r}")
                data["enabled"] = flag in ("true", "1", "yes")
            for key in ("credentials_ref", "rtsp_transport"):
                if values.get(key):
                    data[key] = values[key].lower() if key == "rtsp_transport" else values[key]
        except (ValueError, ValidationError) as error:
            reason = _explain(error) if isinstance(error, ValidationError) else str(error)
            errors.append(EntryError(line, values.get("camera_id") or None, reason))
            continue
        candidates.append((line, data))
    return _validate_all(candidates, errors)


def load_file(path: Path) -> list[CameraEntry]:
    text = path.read_text(encoding="utf-8")
    return parse_csv(text) if path.suffix.lower() == ".csv" else parse_yaml(text)


_LIBRDKAFKA_LOG = logging.getLogger("cctv.inventory.librdkafka")
_LIBRDKAFKA_LOG.setLevel(logging.ERROR)


def publish(
    settings: KafkaSettings, serde: AvroSerde, entries: list[CameraEntry], remove: list[str] | None = None
) -> int:
    """Publish entries (and tombstones for `remove`) in one transaction. Returns records written."""
    producer = Producer(
        settings.client_config()
        | {
            # librdkafka's "GETPID ... retrying" warnings while a fresh broker loads its transaction
            # coordinator are routine; errors still reach the terminal.
            "logger": _LIBRDKAFKA_LOG,
            "transactional.id": f"cctv-inventory-{uuid.uuid4()}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    now = int(time.time() * 1000)
    try:
        for entry in entries:
            _produce(producer, entry.camera_id.encode(), serde.serialize(CAMERAS, "CameraConfig", entry.to_record(now)))
        for camera_id in remove or []:
            _produce(producer, camera_id.encode(), None)
        producer.commit_transaction(60)
    except Exception:
        producer.abort_transaction(30)
        raise
    return len(entries) + len(remove or [])


def _produce(producer: Producer, key: bytes, value: bytes | None) -> None:
    """Produce, waiting for deliveries while the local queue is full (a city-wide import or removal)."""
    while True:
        try:
            producer.produce(CAMERAS, key=key, value=value)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.5)


def read_inventory(settings: KafkaSettings, serde: AvroSerde, timeout_s: float = 30.0) -> dict[str, CameraEntry]:
    """The current inventory: the compacted topic read from the beginning to its end, latest per key."""
    follower = InventoryFollower(settings, serde)
    try:
        return follower.read_to_end(timeout_s)
    finally:
        follower.stop()
