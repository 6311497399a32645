"""Pydantic configuration: cameras and their zones, severity policy, incident and tracker settings.

Rule parameters live with each rule type, in rules/<type>.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .filters import ObjectFilter
from .geometry import polygon_problem
from .model import Severity
from .rules.base import AnyRuleConfig, on_rule_registered, registered_rules
from .schedule import WeeklySchedule

if TYPE_CHECKING:
    from libs.cameras import CameraEntry


class ZoneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    polygon: list[tuple[float, float]]
    schedule: WeeklySchedule | None = None
    # When set, rules in this zone only consider these classes (intersected with each rule's classes).
    classes: list[str] | None = None
    # Each entry is validated by the model its `type` registered (see rules/base.py).
    rules: list[AnyRuleConfig] = Field(min_length=1)
    # False-alarm controls: which confirmed tracks this zone's rules count at all (see filters.py).
    filters: ObjectFilter | None = None

    @model_validator(mode="after")
    def _rule_names_unique(self) -> ZoneConfig:
        keys = [rule.key for rule in self.rules]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(
                f"zone {self.name!r}: rule names {duplicates} are used more than once; "
                "give each rule of the same type a distinct `name`"
            )
        return self

    def watched_classes(self, rule_classes: list[str]) -> frozenset[str]:
        if self.classes is None:
            return frozenset(rule_classes)
        return frozenset(rule_classes) & frozenset(self.classes)


class CameraConfig(BaseModel):
    """Camera context: identity, tags used for severity and routing, and its zones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    camera_id: str = Field(min_length=1)
    name: str = ""
    site_id: str = ""
    tags: list[str] = Field(default_factory=list)
    zones: list[ZoneConfig] = Field(default_factory=list)

    @classmethod
    def from_entry(cls, entry: CameraEntry) -> CameraConfig:
        """The rule side of an inventory entry; its zones (plain dicts there) are validated here."""
        return cls.model_validate(
            {
                "camera_id": entry.camera_id,
                "name": entry.name,
                "site_id": entry.site_id,
                "tags": entry.tags,
                "zones": entry.zones,
            }
        )

    @field_validator("zones", mode="before")
    @classmethod
    def _zones_valid(cls, zones: object, info: ValidationInfo) -> object:
        """Check polygons here (not in ZoneConfig) so every message names the camera as well as the zone.
        When a polygon is wrong, the zone's other errors (rules, schedule) are reported in the same
        message, so an operator fixes the entry in one pass instead of one layer at a time."""
        camera_id = info.data.get("camera_id", "?")
        if not isinstance(zones, list):
            return zones
        seen: set[str] = set()
        problems: list[str] = []
        for index, zone in enumerate(zones):
            if not isinstance(zone, dict):
                continue
            zone_name = zone.get("name", f"#{index}")
            where = f"camera {camera_id!r} zone {zone_name!r}"
            if zone_name in seen:
                problems.append(f"camera {camera_id!r}: zone name {zone_name!r} is used more than once")
            seen.add(zone_name)
            problem = _polygon_problem_of(zone.get("polygon"))
            if problem is not None:
                problems.append(f"{where}: polygon {problem}")
                problems += [f"{where}: {error}" for error in _other_zone_errors(zone)]
        if problems:
            raise ValueError("; ".join(problems))
        return zones

    @model_validator(mode="after")
    def _zone_names_unique(self) -> CameraConfig:
        names = [zone.name for zone in self.zones]
        if len(names) != len(set(names)):
            raise ValueError(f"camera {self.camera_id!r}: zone names must be unique, got {names}")
        for zone in self.zones:
            problem = polygon_problem(zone.polygon)
            if problem is not None:
                raise ValueError(f"camera {self.camera_id!r} zone {zone.name!r}: polygon {problem}")
        return self


class SeverityOverride(BaseModel):
    """Raise (never lower) severity for `rule_types` (all when omitted) at cameras with any of `camera_tags`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_types: list[str] | None = None
    camera_tags: list[str] = Field(min_length=1)
    severity: Severity


class SeverityPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Severity = Severity.MEDIUM
    # Defaults to each registered rule type's own `default_severity`.
    by_rule_type: dict[str, Severity] = Field(
        default_factory=lambda: {name: entry.config.default_severity for name, entry in registered_rules().items()}
    )
    overrides: list[SeverityOverride] = Field(
        default_factory=lambda: [
            SeverityOverride(rule_types=["intrusion"], camera_tags=["school-zone"], severity=Severity.HIGH),
            SeverityOverride(rule_types=["abandoned_object"], camera_tags=["crime-hotspot"], severity=Severity.HIGH),
            SeverityOverride(rule_types=["crowding"], camera_tags=["riverside"], severity=Severity.HIGH),
            SeverityOverride(rule_types=["loitering"], camera_tags=["crime-hotspot"], severity=Severity.MEDIUM),
        ]
    )

    def severity_for(self, rule_type: str, camera_tags: list[str], explicit: Severity | None = None) -> Severity:
        if explicit is not None:
            return explicit
        severity = self.by_rule_type.get(rule_type, self.default)
        tags = set(camera_tags)
        for override in self.overrides:
            applies_to_rule = override.rule_types is None or rule_type in override.rule_types
            if applies_to_rule and tags.intersection(override.camera_tags) and override.severity.rank > severity.rank:
                severity = override.severity
        return severity


class IncidentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Condition must stay false this long before `end` (bridges detector misses and low frame rates).
    end_grace_s: float = Field(default=10.0, ge=0)
    # At most one `update` per incident per this many seconds.
    update_interval_s: float = Field(default=30.0, gt=0)


class TrackerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Detections at or above this score may start tracks; lower ones (>= min_score) only extend tracks.
    new_track_score: float = Field(default=0.4, ge=0, le=1)
    min_score: float = Field(default=0.3, ge=0, le=1)
    # A track counts (is reported to rules) after this many matched frames.
    min_hits: int = Field(default=2, ge=1)
    # Tracks not matched for this long are dropped; time based, so it means the same at 0.5 fps and 10 fps.
    max_age_s: float = Field(default=4.0, gt=0)
    # Fastest plausible motion (body heights per second) bridged across a gap for a track seen only once,
    # whose velocity is still unknown. Running is about 3 body heights/s.
    max_speed_heights_per_s: float = Field(default=3.0, gt=0)
    # For a track with a measured velocity: how far (body heights per second of gap) it may stray from its
    # predicted path. Tighter than max_speed, so a lost track does not grab a newcomer's box.
    max_deviation_heights_per_s: float = Field(default=1.0, gt=0)
    # Kalman filter noise, in body heights: how much speed may change per second, and box-centre jitter.
    accel_noise_heights_per_s2: float = Field(default=1.0, gt=0)
    measurement_noise_heights: float = Field(default=0.1, gt=0)
    # Slack for box jitter (in body heights) on top of the motion allowance.
    base_gate_heights: float = Field(default=0.4, gt=0)
    # Velocity is extrapolated for at most this long, so long gaps do not fling predictions away.
    max_predict_s: float = Field(default=1.5, gt=0)
    # How many seconds of foot-point history each track keeps (rules read speed and stillness from it).
    history_s: float = Field(default=12.0, gt=0)

    @model_validator(mode="after")
    def _scores_ordered(self) -> TrackerSettings:
        if self.min_score > self.new_track_score:
            raise ValueError(f"min_score ({self.min_score}) must not exceed new_track_score ({self.new_track_score})")
        return self


def _rebuild_rule_models() -> None:
    """A rule type registered after import (a plugin): zone and camera validation must know it too."""
    ZoneConfig.model_rebuild(force=True)
    CameraConfig.model_rebuild(force=True)


on_rule_registered(_rebuild_rule_models)


def _polygon_problem_of(polygon: object) -> str | None:
    try:
        points = [(float(point[0]), float(point[1])) for point in polygon]  # type: ignore[attr-defined]
        if any(len(point) != 2 for point in polygon):  # type: ignore[attr-defined]
            raise ValueError
    except (TypeError, ValueError, IndexError):
        return f"must be a list of [x, y] pairs, got {polygon!r}"
    return polygon_problem(points)


def _other_zone_errors(zone: dict[str, object]) -> list[str]:
    """The zone's errors apart from its polygon, as `path: message` strings."""
    try:
        ZoneConfig.model_validate({**zone, "polygon": []})
    except ValidationError as error:
        return [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()]
    return []
