"""The annotation file `cctv eval` reads: which clips, how each camera is configured, what happened when.

YAML::

    clips:
      - clip: vtest-h264.mp4          # relative to the clips directory
        part: tune                    # tune (defaults may be chosen on it) or report (default; scored)
        start_s: 0                    # optional excerpt of the file (default: all of it)
        end_s: 40
        sampling: {mode: fps, fps: 2} # the camera's sampling policy (default: the inventory default)
        tags: [school-zone]
        zones:                        # exactly as in the camera inventory
          - name: lawn
            polygon: [[0.0, 0.6], [0.3, 0.6], [0.3, 1.0], [0.0, 1.0]]
            rules: [{type: intrusion}]
        labelled: [intrusion]         # event types labelled completely on this clip (scored)
        events:
          - {type: intrusion, start_s: 12.5, zone: lawn, note: man in white enters from the left}

Times are seconds from the start of the excerpt. A clip scores only the types it lists in `labelled`:
on footage where nobody looked for an event type, its alerts prove nothing either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from libs.cameras import Sampling


class AnnotationError(ValueError):
    """The annotation file is missing, unreadable or inconsistent (message says where and how to fix)."""


class EventLabel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1)
    start_s: float = Field(ge=0)
    end_s: float | None = Field(default=None, ge=0)
    zone: str | None = None
    note: str = ""

    @model_validator(mode="after")
    def _ends_after_start(self) -> EventLabel:
        if self.end_s is not None and self.end_s < self.start_s:
            raise ValueError(f"event {self.type!r} at {self.start_s} s ends before it starts ({self.end_s} s)")
        return self


class ClipAnnotation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clip: str = Field(min_length=1)
    # Tuning footage and reported footage are kept apart: numbers are reported on `report` clips only.
    part: Literal["tune", "report"] = "report"
    start_s: float = Field(default=0.0, ge=0)
    end_s: float | None = Field(default=None, gt=0)
    sampling: Sampling = Sampling()
    tags: list[str] = Field(default_factory=list)
    zones: list[dict[str, Any]] = Field(min_length=1)
    labelled: list[str] = Field(min_length=1)
    events: list[EventLabel] = Field(default_factory=list)
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ClipAnnotation:
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"clip {self.clip!r}: end_s ({self.end_s}) must be after start_s ({self.start_s})")
        unlabelled = sorted({e.type for e in self.events} - set(self.labelled))
        if unlabelled:
            raise ValueError(f"clip {self.clip!r}: events of types {unlabelled} are not in `labelled`; add them")
        zone_names = {str(z.get("name")) for z in self.zones}
        unknown = sorted({e.zone for e in self.events if e.zone is not None} - zone_names)
        if unknown:
            raise ValueError(f"clip {self.clip!r}: events name zones {unknown} that are not among {sorted(zone_names)}")
        return self

    @property
    def clip_id(self) -> str:
        """Unique per excerpt: the same file can appear twice (a tuning part and a reported part)."""
        end = "end" if self.end_s is None else f"{self.end_s:g}"
        return f"{self.clip}@{self.start_s:g}-{end}"


class AnnotationFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clips: list[ClipAnnotation] = Field(min_length=1)


def load_annotations(path: Path, clips_dir: Path) -> AnnotationFile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise AnnotationError(f"cannot read annotation file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise AnnotationError(f"annotation file {path} is not valid YAML: {error}") from None
    try:
        annotations = AnnotationFile.model_validate(raw)
    except ValidationError as error:
        raise AnnotationError(f"annotation file {path}: {error}") from None
    missing = sorted({c.clip for c in annotations.clips if not (clips_dir / c.clip).is_file()})
    if missing:
        raise AnnotationError(f"clips {missing} named in {path} are not in {clips_dir}")
    return annotations
