"""The camera inventory: one validated model for a camera, and its mapping to the CameraConfig record.

Publishers (`cctv cameras apply|import`) validate with it; ingest, frame-sampler and alert-router read
records back through it. Zone and rule semantics are validated by the alert-router's own models.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.redact import redact_url

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "file://")
_RULE_FIXED_KEYS = ("type", "name", "severity", "classes", "line", "direction")
# The RuleType enum's reader default: a rule type added after this reader's schema decodes as this.
UNKNOWN_RULE_TYPE = "unknown"

log = logging.getLogger(__name__)


class GeoPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Sampling(BaseModel):
    """Which frames of a camera the frame-sampler looks at: every keyframe, or the frame nearest each
    1/fps tick; a still scene still sends one frame every heartbeat_s. The one sampling model: the
    inventory carries it per camera, the frame-sampler's settings carry the default.

    Also accepts the short forms `"keyframes"`, `"fps:2"` and `{"fps": 2}`. In keyframes mode a given
    fps is dropped (an inventory may keep one for a later switch to fps mode). The rate is capped at 60:
    no camera we ingest sends more, and above the keyframe rate every frame must be decoded (~25x the
    cost of the keyframe path), so a higher cap would only admit configurations that cannot be met.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["keyframes", "fps"] = "keyframes"
    fps: float | None = Field(default=None, gt=0, le=60, description="frames per second when mode is 'fps'")
    heartbeat_s: float = Field(default=30.0, gt=0, description="an idle camera emits one frame per this many seconds")

    @model_validator(mode="before")
    @classmethod
    def _accept_short_forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "keyframes":
                return {"mode": "keyframes"}
            if text.startswith("fps:"):
                return {"mode": "fps", "fps": text.removeprefix("fps:")}
            raise ValueError(f"sampling must be 'keyframes', 'fps:N' or {{'fps': N}}, got {value!r}")
        if isinstance(value, dict) and value.get("fps") is not None and "mode" not in value:
            return {**value, "mode": "fps"}
        return value

    @model_validator(mode="after")
    def _fps_with_mode(self) -> Sampling:
        if self.mode == "fps" and self.fps is None:
            raise ValueError("sampling mode 'fps' needs a rate, e.g. {mode: fps, fps: 2}")
        if self.mode == "keyframes" and self.fps is not None:
            object.__setattr__(self, "fps", None)  # frozen model: normalise in place once, at validation
        return self

    @property
    def period_us(self) -> int | None:
        """Microseconds between sampling ticks; None in keyframes mode."""
        return round(1_000_000 / self.fps) if self.fps is not None else None

    @classmethod
    def parse_short(cls, text: str) -> Sampling:
        """'keyframes' or 'fps:2' (the CSV form); empty means the default."""
        return cls() if not text.strip() else cls.model_validate(text)


class CameraEntry(BaseModel):
    """One camera as an operator writes it (YAML/CSV) and as services read it."""

    model_config = ConfigDict(extra="forbid")

    camera_id: str
    name: str = ""
    site_id: str = ""
    stream_url: str
    credentials_ref: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{1,64}$")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    loop: bool = False
    realtime: bool = True
    location: GeoPoint | None = None
    tags: list[str] = Field(default_factory=list)
    sampling: Sampling = Field(default_factory=Sampling)
    zones: list[dict[str, Any]] = Field(default_factory=list)
    timezone: str = "Asia/Seoul"
    enabled: bool = True

    @field_validator("camera_id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                f"camera_id {value!r} must be 1-128 letters, digits or _.:- and start with a letter or digit"
            )
        return value

    @field_validator("stream_url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if not value.startswith(_SCHEMES):
            raise ValueError(f"stream_url {redact_url(value)!r} must start with one of {', '.join(_SCHEMES)}")
        return value

    @field_validator("tags")
    @classmethod
    def _tags_lower(cls, value: list[str]) -> list[str]:
        return sorted({tag.strip().lower() for tag in value if tag.strip()})

    # ---- Avro mapping -------------------------------------------------------------------------------------

    def to_record(self, updated_at_ms: int | None = None) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "name": self.name or self.camera_id,
            "site_id": self.site_id,
            "stream_url": self.stream_url,
            "credentials_ref": self.credentials_ref,
            "rtsp_transport": self.rtsp_transport.upper(),
            "loop": self.loop,
            "realtime": self.realtime,
            "location": self.location.model_dump() if self.location else None,
            "tags": self.tags,
            "sampling": {
                "mode": self.sampling.mode.upper(),
                "fps": self.sampling.fps,
                "heartbeat_s": self.sampling.heartbeat_s,
            },
            "zones": [_zone_to_record(zone) for zone in self.zones],
            "timezone": self.timezone,
            "enabled": self.enabled,
            "updated_at": updated_at_ms if updated_at_ms is not None else int(time.time() * 1000),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> CameraEntry:
        sampling = record["sampling"]
        return cls(
            camera_id=record["camera_id"],
            name=record["name"],
            site_id=record["site_id"],
            stream_url=record["stream_url"],
            credentials_ref=record.get("credentials_ref"),
            rtsp_transport=record["rtsp_transport"].lower(),
            loop=record["loop"],
            realtime=record["realtime"],
            location=record.get("location"),
            tags=record["tags"],
            sampling=Sampling(
                mode=sampling["mode"].lower(), fps=sampling.get("fps"), heartbeat_s=sampling["heartbeat_s"]
            ),
            zones=_zones_from_record(record["camera_id"], record["zones"]),
            timezone=record["timezone"],
            enabled=record["enabled"],
        )


def _points_to_record(points: Any) -> list[dict[str, float]]:
    return [{"x": float(point[0]), "y": float(point[1])} for point in points]


def _zone_to_record(zone: dict[str, Any]) -> dict[str, Any]:
    schedule = zone.get("schedule")
    return {
        "name": str(zone.get("name", "")),
        "polygon": _points_to_record(zone.get("polygon") or []),
        "classes": zone.get("classes"),
        "schedule": None
        if schedule is None
        else {
            "timezone": schedule.get("timezone", "UTC"),
            "windows": [
                {
                    "days": list(w.get("days", ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])),
                    "start": str(w["start"]),
                    "end": str(w["end"]),
                }
                for w in schedule.get("windows", [])
            ],
        },
        "rules": [_rule_to_record(rule) for rule in zone.get("rules") or []],
        "filters_json": json.dumps(zone["filters"], sort_keys=True) if zone.get("filters") else None,
    }


def _rule_to_record(rule: dict[str, Any]) -> dict[str, Any]:
    extra = {key: value for key, value in rule.items() if key not in _RULE_FIXED_KEYS}
    # Numbers travel typed in `params`; anything else (lists, strings, booleans) as one JSON object.
    params = {key: float(v) for key, v in extra.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    options = {key: v for key, v in extra.items() if key not in params}
    return {
        "type": rule["type"],
        "name": rule.get("name"),
        "severity": rule.get("severity"),
        "classes": list(rule.get("classes") or []),
        "line": _points_to_record(rule["line"]) if rule.get("line") else None,
        "direction": rule.get("direction"),
        "params": params,
        "options_json": json.dumps(options, sort_keys=True) if options else None,
    }


def _zones_from_record(camera_id: str, zones: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules of a type newer than this reader's schema arrive as `unknown` (the enum default): they are
    skipped, the zone's other rules still run, and a zone left without rules is dropped."""
    out = []
    for zone in zones:
        known = [rule for rule in zone["rules"] if rule["type"] != UNKNOWN_RULE_TYPE]
        if len(known) < len(zone["rules"]):
            log.warning(
                "camera %s zone %s: %d rule(s) of a type this version does not know skipped (upgrade to run them)",
                camera_id,
                zone["name"],
                len(zone["rules"]) - len(known),
            )
        if known:
            out.append(_zone_from_record({**zone, "rules": known}))
    return out


def _zone_from_record(zone: dict[str, Any]) -> dict[str, Any]:
    """Back to the operator's form, which the alert-router's ZoneConfig validates."""
    out: dict[str, Any] = {
        "name": zone["name"],
        "polygon": [[p["x"], p["y"]] for p in zone["polygon"]],
        "rules": [_rule_from_record(rule) for rule in zone["rules"]],
    }
    if zone.get("classes") is not None:
        out["classes"] = zone["classes"]
    if zone.get("schedule") is not None:
        out["schedule"] = zone["schedule"]
    if zone.get("filters_json"):
        out["filters"] = json.loads(zone["filters_json"])
    return out


def _rule_from_record(rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": rule["type"], **rule.get("params", {})}
    if rule.get("options_json"):
        out.update(json.loads(rule["options_json"]))
    for key in ("name", "severity", "direction"):
        if rule.get(key) is not None:
            out[key] = rule[key]
    if rule.get("classes"):
        out["classes"] = rule["classes"]
    if rule.get("line"):
        out["line"] = [[p["x"], p["y"]] for p in rule["line"]]
    return out
