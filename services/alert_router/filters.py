"""False-alarm controls of a zone: which confirmed tracks its rules may count at all.

Checked on every frame before the zone's rules see a track: the detection score (one floor for the zone,
or one per class), the box height relative to the frame (people far away or a bus filling the view),
masks (areas where a flag, a tree or a screen moves: a track standing in one is ignored) and a minimum
persistence (a track must have been followed this long before it counts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .geometry import point_in_polygon, polygon_problem

if TYPE_CHECKING:
    from .tracking import Track


class ObjectFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Detection score a track's latest detection needs; `class_min_score` overrides it per class.
    min_score: float | None = Field(default=None, ge=0, le=1)
    class_min_score: dict[str, float] = Field(default_factory=dict)
    # Box height as a fraction of the frame height (0..1).
    min_height: float | None = Field(default=None, gt=0, le=1)
    max_height: float | None = Field(default=None, gt=0, le=1)
    # Polygons (normalised image coordinates); a track whose foot point lies in one is ignored.
    masks: list[list[tuple[float, float]]] = Field(default_factory=list)
    # Seconds since a track was first seen before it counts.
    min_persistence_s: float = Field(default=0.0, ge=0)

    @field_validator("class_min_score")
    @classmethod
    def _scores_in_range(cls, scores: dict[str, float]) -> dict[str, float]:
        bad = {name: value for name, value in scores.items() if not 0 <= value <= 1}
        if bad:
            raise ValueError(f"class_min_score values must be between 0 and 1, got {bad}")
        return scores

    @field_validator("masks")
    @classmethod
    def _masks_are_polygons(cls, masks: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        for index, mask in enumerate(masks):
            problem = polygon_problem(mask)
            if problem is not None:
                raise ValueError(f"mask {index}: {problem}")
        return masks

    @model_validator(mode="after")
    def _sizes_ordered(self) -> ObjectFilter:
        if self.min_height is not None and self.max_height is not None and self.min_height > self.max_height:
            raise ValueError(f"min_height ({self.min_height}) must not exceed max_height ({self.max_height})")
        return self

    def admits(self, track: Track, now_ms: int) -> bool:
        floor = self.class_min_score.get(track.class_name, self.min_score)
        if floor is not None and track.score < floor:
            return False
        if self.min_height is not None and track.height < self.min_height:
            return False
        if self.max_height is not None and track.height > self.max_height:
            return False
        if now_ms - track.first_seen_ms < self.min_persistence_s * 1000.0:
            return False
        return not any(point_in_polygon(track.foot, mask) for mask in self.masks)
