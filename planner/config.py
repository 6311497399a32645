"""The plan configuration (`plan.yaml`): layers, candidate sites, coverage model, budget, solver.

Validated completely at start so a planner learns every mistake before anything heavy runs.
Relative paths resolve against the config file; `libpysal:<dir>/<file>` names real data bundled in the
libpysal wheel (used by the shipped example and the tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class PlanConfigError(ValueError):
    """A configuration or input problem, worded for the planner who has to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayerSource(_Strict):
    """One file of points, lines or polygons (CSV with lat/lon columns, GeoJSON, Shapefile, GeoPackage)."""

    path: str
    crs: str | None = Field(default=None, description="CRS of the file when it does not say (CSV: EPSG:4326)")
    lat_column: str | None = None
    lon_column: str | None = None
    weight_column: str | None = None
    where: str | None = Field(default=None, description="pandas query keeping some rows, e.g. \"type == 'theft'\"")
    encoding: str | None = Field(default=None, description="CSV encoding; default: UTF-8, else CP949")


class DemandLayer(LayerSource):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,40}$")
    kind: Literal["crime", "complaint", "request", "vulnerable", "population", "other"] = "other"
    weight: float = Field(default=1.0, gt=0, description="multiplies every row's weight in this layer")


class CameraLayer(LayerSource):
    format: Literal["auto", "inventory", "korean_standard", "points"] = "auto"
    camera_type: str | None = Field(default=None, description="coverage type for every camera of this file")
    type_column: str | None = None
    heading_column: str | None = None
    fov_column: str | None = None


class CandidatePoints(LayerSource):
    cost_column: str | None = Field(default=None, description="per-site installation cost (else the type's cost)")


class StreetCandidates(LayerSource):
    spacing_m: float = Field(default=50.0, gt=0)


class H3Candidates(_Strict):
    resolution: int = Field(default=10, ge=5, le=13)


class Candidates(_Strict):
    points: list[CandidatePoints] = Field(default_factory=list)
    streets: StreetCandidates | None = None
    h3: H3Candidates | None = None

    @model_validator(mode="after")
    def _some_source(self) -> Candidates:
        if not self.points and self.streets is None and self.h3 is None:
            raise ValueError("name at least one source of candidate sites: points, streets or h3")
        return self


class CameraType(_Strict):
    radius_m: float = Field(gt=0, le=2000)
    fov_deg: float = Field(default=360.0, gt=0, le=360)
    cost: float = Field(default=1.0, ge=0)


class Coverage(_Strict):
    camera_types: dict[str, CameraType] = Field(default_factory=lambda: {"fixed": CameraType(radius_m=50)})
    default_type: str = "fixed"
    new_camera_type: str = "fixed"
    obstacles: LayerSource | None = None

    @model_validator(mode="after")
    def _types_known(self) -> Coverage:
        for role in ("default_type", "new_camera_type"):
            if getattr(self, role) not in self.camera_types:
                raise ValueError(
                    f"{role} {getattr(self, role)!r} is not one of camera_types ({', '.join(self.camera_types)})"
                )
        return self


class Budget(_Strict):
    cameras: int | None = Field(default=None, ge=1)
    total_cost: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_budget(self) -> Budget:
        if (self.cameras is None) == (self.total_cost is None):
            raise ValueError(
                "give exactly one of budget.cameras (how many new cameras) or budget.total_cost "
                "(with camera_types.<type>.cost per site)"
            )
        return self


class Solver(_Strict):
    time_limit_s: float = Field(default=120.0, gt=0)
    mip_rel_gap: float = Field(default=1e-4, ge=0, lt=1)
    exact_max_cells: int = Field(
        default=500_000, ge=1, description="largest demand-pattern x candidate matrix solved exactly by spopt"
    )
    lscp: bool = True


class Hotspots(_Strict):
    enabled: bool = True
    cell_m: float = Field(default=100.0, gt=0)
    max_cells: int = Field(default=40_000, ge=4)
    permutations: int = Field(default=999, ge=0)
    significance: float = Field(default=0.05, gt=0, lt=1)
    kde_bandwidth_m: float | None = Field(default=None, gt=0)


class PlanConfig(_Strict):
    name: str = "camera placement plan"
    crs: str = Field(default="auto", description="metric CRS; auto = EPSG:5186 in Korea, else the UTM zone")
    existing_cameras: list[CameraLayer] = Field(default_factory=list)
    demand: list[DemandLayer]
    candidates: Candidates
    coverage: Coverage = Field(default_factory=Coverage)
    budget: Budget
    solver: Solver = Field(default_factory=Solver)
    hotspots: Hotspots = Field(default_factory=Hotspots)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("demand")
    @classmethod
    def _demand_named_once(cls, layers: list[DemandLayer]) -> list[DemandLayer]:
        if not layers:
            raise ValueError("name at least one demand layer (crimes, complaints, vulnerable places, ...)")
        names = [layer.name for layer in layers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"demand layer names must be unique; repeated: {', '.join(repeated)}")
        return layers

    @model_validator(mode="after")
    def _camera_types_exist(self) -> PlanConfig:
        for layer in self.existing_cameras:
            if layer.camera_type is not None and layer.camera_type not in self.coverage.camera_types:
                raise ValueError(
                    f"existing camera file {layer.path}: camera_type {layer.camera_type!r} is not one "
                    f"of coverage.camera_types ({', '.join(self.coverage.camera_types)})"
                )
        return self

    def resolve(self, path: str) -> Path:
        if path.startswith("libpysal:"):
            import libpysal.examples

            return Path(libpysal.examples.__file__).parent / path.removeprefix("libpysal:")
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate


def _explain(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}" if where else f"  {message}")
    return "\n".join(lines)


def parse_config(data: object, base_dir: Path) -> PlanConfig:
    if not isinstance(data, dict):
        raise PlanConfigError("the plan config must be a YAML mapping with demand:, candidates: and budget:")
    try:
        return PlanConfig.model_validate({**data, "base_dir": base_dir})
    except ValidationError as error:
        raise PlanConfigError("invalid plan config:\n" + _explain(error)) from None


def load_config(path: Path) -> PlanConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PlanConfigError(f"cannot read plan config {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PlanConfigError(f"{path} is not valid YAML: {error}") from None
    return parse_config(data, path.resolve().parent)
