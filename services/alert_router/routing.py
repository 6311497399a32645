"""Routing table: which destinations (and so which Kafka topics) receive an alert."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from libs.destinations import DestinationDelivery, check_destination_names
from libs.topics import DESTINATION_PATTERN, DESTINATION_RULE

from .config import CameraConfig
from .model import AlertEvent, AlertKind, Severity
from .schedule import WeeklySchedule

log = logging.getLogger(__name__)

DEFAULT_ROUTES_PATH = Path(__file__).with_name("routes.default.yaml")


class Route(BaseModel):
    """All given conditions must hold; an omitted condition matches everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    destinations: list[str] = Field(min_length=1)
    # Rule types ("intrusion", "crowding", "fire", ...); None = any.
    rule_types: list[str] | None = None
    # Alert lifecycle kinds to forward; default all, so a destination sees the incident close.
    kinds: list[AlertKind] = Field(default_factory=lambda: list(AlertKind))
    min_severity: Severity = Severity.LOW
    # Any-of match on the camera's tags; None = any camera.
    camera_tags: list[str] | None = None
    # Evaluated at the alert's detected_at time.
    schedule: WeeklySchedule | None = None

    @field_validator("destinations")
    @classmethod
    def _destinations_topic_safe(cls, destinations: list[str]) -> list[str]:
        bad = [d for d in destinations if not DESTINATION_PATTERN.match(d)]
        if bad:
            raise ValueError(
                f"destinations {bad} are not topic-safe; {DESTINATION_RULE} "
                "(they become topics cctv.alerts.<destination>.v1)"
            )
        return destinations

    def matches(self, alert: AlertEvent, camera: CameraConfig) -> bool:
        if self.rule_types is not None and alert.rule_type not in self.rule_types:
            return False
        if alert.kind not in self.kinds:
            return False
        if alert.severity.rank < self.min_severity.rank:
            return False
        if self.camera_tags is not None and not set(self.camera_tags).intersection(camera.tags):
            return False
        return self.schedule is None or self.schedule.is_active(alert.detected_at)


class RoutingTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: list[Route] = Field(default_factory=list)
    # Per destination, where the dispatcher delivers its alerts (webhooks); see libs/destinations.py.
    endpoints: dict[str, DestinationDelivery] = Field(default_factory=dict)

    @field_validator("routes")
    @classmethod
    def _route_names_unique(cls, routes: list[Route]) -> list[Route]:
        names = [r.name for r in routes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"route names {duplicates} are used more than once")
        return routes

    @field_validator("endpoints")
    @classmethod
    def _endpoint_destinations_topic_safe(
        cls, endpoints: dict[str, DestinationDelivery]
    ) -> dict[str, DestinationDelivery]:
        return check_destination_names(endpoints)

    def route(self, alert: AlertEvent, camera: CameraConfig) -> list[str]:
        """Destinations for this alert (sorted, unique); [] when no route matches."""
        return sorted({d for r in self.routes if r.matches(alert, camera) for d in r.destinations})

    def destinations(self) -> list[str]:
        """Every destination the table can route to (to create/check topics at start-up)."""
        return sorted({d for r in self.routes for d in r.destinations})

    @classmethod
    def from_yaml(cls, path: str | Path) -> RoutingTable:
        """Load and validate; raises RoutingConfigError naming the file and the problem."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except OSError as error:
            raise RoutingConfigError(f"cannot read routing table {path}: {error}") from error
        except yaml.YAMLError as error:
            raise RoutingConfigError(f"routing table {path} is not valid YAML: {error}") from error
        if data is None:
            data = {}
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise RoutingConfigError(f"routing table {path} is invalid:\n{error}") from error


class RoutingConfigError(ValueError):
    """The routing table file is unreadable or invalid."""


def route(table: RoutingTable, alert: AlertEvent, camera: CameraConfig) -> list[str]:
    return table.route(alert, camera)


@dataclass(frozen=True, slots=True)
class _FileStamp:
    mtime_ns: int
    size: int


class RoutingTableLoader:
    """Holds the current routing table and reloads it when the file changes (mtime or size).

    The first load must succeed (raises RoutingConfigError). Later, an invalid file keeps the previous table
    in force; the error is logged and kept in `last_error` until a valid file replaces it.
    """

    def __init__(self, path: str | Path = DEFAULT_ROUTES_PATH) -> None:
        self.path = Path(path)
        self._stamp = self._read_stamp()
        self.table = RoutingTable.from_yaml(self.path)
        self.last_error: str | None = None

    def _read_stamp(self) -> _FileStamp | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return _FileStamp(stat.st_mtime_ns, stat.st_size)

    def reload_if_changed(self) -> bool:
        """Returns True when a new table was loaded. Cheap (one stat) when nothing changed."""
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.table = RoutingTable.from_yaml(self.path)
        except RoutingConfigError as error:
            self.last_error = str(error)
            log.error("keeping the previous routing table: %s", error)
            return False
        self.last_error = None
        log.info("routing table reloaded from %s (%d routes)", self.path, len(self.table.routes))
        return True
