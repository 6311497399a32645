"""Pydantic configuration: cameras, zones, rules, severity policy, incident and tracker settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .geometry import polygon_problem
from .model import Severity
from .schedule import WeeklySchedule

NormalisedPoint = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]

PERSON_CLASSES: tuple[str, ...] = ("person",)
LUGGAGE_CLASSES: tuple[str, ...] = ("backpack", "handbag", "suitcase")


class _RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Unique within its zone; defaults to the rule type. Part of the alert id, so keep it stable.
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Overrides the severity policy for this rule when set.
    severity: Severity | None = None

    @property
    def key(self) -> str:
        return self.name or self.type  # type: ignore[attr-defined]


class IntrusionRule(_RuleBase):
    """A watched-class object's foot point is inside the (restricted) zone."""

    type: Literal["intrusion"] = "intrusion"
    classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), min_length=1)


class LoiteringRule(_RuleBase):
    """The same track stays inside the zone for longer than `min_dwell_s`."""

    type: Literal["loitering"] = "loitering"
    classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), min_length=1)
    min_dwell_s: float = Field(default=60.0, gt=0)


class CrowdingRule(_RuleBase):
    """At least `min_count` watched objects inside the zone for at least `min_duration_s`."""

    type: Literal["crowding"] = "crowding"
    classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), min_length=1)
    min_count: int = Field(default=10, ge=2)
    min_duration_s: float = Field(default=10.0, ge=0)


class LineCrossingRule(_RuleBase):
    """A track's foot point moves across `line` (two normalised points, first -> second).

    `a_to_b` = from the left-hand side to the right-hand side of the directed segment first -> second,
    as seen on screen; `b_to_a` the opposite way; `both` either way. The zone polygon is not consulted.
    """

    type: Literal["line_crossing"] = "line_crossing"
    classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), min_length=1)
    line: tuple[NormalisedPoint, NormalisedPoint]
    direction: Literal["a_to_b", "b_to_a", "both"] = "both"

    @field_validator("line")
    @classmethod
    def _line_has_length(
        cls, value: tuple[NormalisedPoint, NormalisedPoint]
    ) -> tuple[NormalisedPoint, NormalisedPoint]:
        (ax, ay), (bx, by) = value
        if abs(ax - bx) < 1e-6 and abs(ay - by) < 1e-6:
            raise ValueError(f"line endpoints {value[0]} and {value[1]} coincide; a crossing line needs length")
        return value


class RunningRule(_RuleBase):
    """Track foot-point speed, in body heights per second (distance-independent), above a threshold."""

    type: Literal["running"] = "running"
    classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), min_length=1)
    # Walking is about 0.8 body heights/s, jogging 2+, so 1.6 separates them at any distance.
    min_speed_heights_per_s: float = Field(default=1.6, gt=0)
    # Speed is measured over (at least) this window to smooth detector jitter.
    window_s: float = Field(default=2.0, gt=0)
    # Shorter spans amplify box jitter into fake speed, so they are not measured.
    min_span_s: float = Field(default=0.25, gt=0)
    # The speed must hold in this many consecutive spans: a jump or two (identity switches) is not running.
    # (At 0.5 fps three spans take 6 s of running in view; at 2 fps, 1.5 s.)
    min_segments: int = Field(default=3, ge=1)
    # At very low frame rates observations are further apart than the window; bridge gaps up to here.
    max_gap_s: float = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _spans_consistent(self) -> RunningRule:
        if self.min_span_s > self.window_s:
            raise ValueError(f"min_span_s ({self.min_span_s}) must not exceed window_s ({self.window_s})")
        if self.max_gap_s < self.window_s:
            raise ValueError(f"max_gap_s ({self.max_gap_s}) must be at least window_s ({self.window_s})")
        return self


class AbandonedObjectRule(_RuleBase):
    """A luggage-class object stays put for `min_unattended_s` with no person near it.

    "Near" is `person_radius_factor` times the object's size, so it scales with camera distance.
    """

    type: Literal["abandoned_object"] = "abandoned_object"
    classes: list[str] = Field(default_factory=lambda: list(LUGGAGE_CLASSES), min_length=1)
    person_classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), min_length=1)
    min_unattended_s: float = Field(default=30.0, gt=0)
    person_radius_factor: float = Field(default=5.0, gt=0)
    # Movement (in object sizes) below this counts as stationary: detector boxes jitter.
    stationary_tolerance: float = Field(default=0.5, gt=0)
    # How long a still object's timers survive it going undetected (missed detections, a person in
    # front of it); seen again within stationary_tolerance of where it stood, it continues its timers.
    memory_s: float = Field(default=120.0, ge=0)


RuleConfig = Annotated[
    IntrusionRule | LoiteringRule | CrowdingRule | LineCrossingRule | RunningRule | AbandonedObjectRule,
    Field(discriminator="type"),
]
RULE_TYPES: tuple[str, ...] = (
    "intrusion",
    "loitering",
    "crowding",
    "line_crossing",
    "running",
    "abandoned_object",
)


class ZoneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    polygon: list[tuple[float, float]]
    schedule: WeeklySchedule | None = None
    # When set, rules in this zone only consider these classes (intersected with each rule's classes).
    classes: list[str] | None = None
    rules: list[RuleConfig] = Field(min_length=1)

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

    @field_validator("zones", mode="before")
    @classmethod
    def _zones_valid(cls, zones: object, info: ValidationInfo) -> object:
        """Check polygons here (not in ZoneConfig) so every message names the camera as well as the zone."""
        camera_id = info.data.get("camera_id", "?")
        if not isinstance(zones, list):
            return zones
        seen: set[str] = set()
        for index, zone in enumerate(zones):
            if not isinstance(zone, dict):
                continue
            zone_name = zone.get("name", f"#{index}")
            if zone_name in seen:
                raise ValueError(f"camera {camera_id!r}: zone name {zone_name!r} is used more than once")
            seen.add(zone_name)
            polygon = zone.get("polygon")
            try:
                points = [(float(point[0]), float(point[1])) for point in polygon]  # type: ignore[union-attr]
                if any(len(point) != 2 for point in polygon):  # type: ignore[union-attr]
                    raise ValueError
            except (TypeError, ValueError, IndexError) as error:
                raise ValueError(
                    f"camera {camera_id!r} zone {zone_name!r}: polygon must be a list of [x, y] pairs, got {polygon!r}"
                ) from error
            problem = polygon_problem(points)
            if problem is not None:
                raise ValueError(f"camera {camera_id!r} zone {zone_name!r}: polygon {problem}")
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
    by_rule_type: dict[str, Severity] = Field(
        default_factory=lambda: {
            "intrusion": Severity.MEDIUM,
            "loitering": Severity.LOW,
            "crowding": Severity.MEDIUM,
            "line_crossing": Severity.LOW,
            "running": Severity.LOW,
            "abandoned_object": Severity.MEDIUM,
        }
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


class AlertRouterConfig(BaseModel):
    """Everything the per-camera rule engine needs; loadable from YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cameras: list[CameraConfig] = Field(default_factory=list)
    severity: SeverityPolicy = Field(default_factory=SeverityPolicy)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)

    @model_validator(mode="after")
    def _camera_ids_unique(self) -> AlertRouterConfig:
        ids = [camera.camera_id for camera in self.cameras]
        duplicates = sorted({camera_id for camera_id in ids if ids.count(camera_id) > 1})
        if duplicates:
            raise ValueError(f"camera ids {duplicates} appear more than once")
        return self

    def camera(self, camera_id: str) -> CameraConfig | None:
        for camera in self.cameras:
            if camera.camera_id == camera_id:
                return camera
        return None

    @classmethod
    def from_yaml(cls, path: str | Path) -> AlertRouterConfig:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        return cls.model_validate(data)
