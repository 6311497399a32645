"""Existing cameras from our inventory (YAML/CSV), the Korean national standard CCTV open-data CSV
(CCTV 정보, Korean headers, UTF-8 or CP949), or any point file with optional type/heading/FOV columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.config import CameraLayer, PlanConfig, PlanConfigError
from planner.layers import WGS84, ReadReport, decode_csv, read_layer

# The standard layout's fields (표준데이터 CCTV정보); the planner uses the ones marked in KOREAN_USED.
KOREAN_STANDARD_FIELDS = (
    "관리기관명",
    "소재지도로명주소",
    "소재지지번주소",
    "설치목적구분",
    "카메라대수",
    "카메라화소수",
    "촬영방면정보",
    "보관일수",
    "설치연월",
    "관리기관전화번호",
    "WGS84위도",
    "WGS84경도",
    "데이터기준일자",
)
KOREAN_LAT, KOREAN_LON, KOREAN_PURPOSE, KOREAN_COUNT = "WGS84위도", "WGS84경도", "설치목적구분", "카메라대수"


@dataclass
class ExistingCameras:
    """Existing cameras in WGS84 with what coverage needs: type, heading (deg from north) and FOV."""

    ids: list[str]
    lon: np.ndarray
    lat: np.ndarray
    camera_type: list[str]
    heading_deg: np.ndarray  # NaN = unknown (then the camera covers its full circle)
    fov_deg: np.ndarray  # NaN = the type's FOV

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> ExistingCameras:
        return cls([], np.empty(0), np.empty(0), [], np.empty(0), np.empty(0))

    @classmethod
    def concat(cls, parts: list[ExistingCameras]) -> ExistingCameras:
        if not parts:
            return cls.empty()
        return cls(
            [i for p in parts for i in p.ids],
            np.concatenate([p.lon for p in parts]),
            np.concatenate([p.lat for p in parts]),
            [t for p in parts for t in p.camera_type],
            np.concatenate([p.heading_deg for p in parts]),
            np.concatenate([p.fov_deg for p in parts]),
        )


def _detect_format(layer: CameraLayer, path: Path) -> str:
    if layer.format != "auto":
        return layer.format
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "inventory"
    if suffix == ".csv":
        header = decode_csv(path.read_bytes()[:4096], path, layer.encoding).splitlines()[0]
        if KOREAN_LAT in header or "관리기관명" in header:
            return "korean_standard"
        if "camera_id" in header and "stream_url" in header:
            return "inventory"
    return "points"


def _from_inventory_yaml(layer: CameraLayer, path: Path, report: ReadReport, default_type: str) -> ExistingCameras:
    # Only what placement needs is validated: stream URLs, zones and rules are the services' business
    # (and the shipped inventory carries {repo}/{rtsp} placeholders that only `cctv up` fills in).
    from libs.cameras import GeoPoint

    class Placed(BaseModel):
        model_config = ConfigDict(extra="ignore")
        camera_id: str = Field(min_length=1)
        location: GeoPoint | None = None
        enabled: bool = True

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise PlanConfigError(f"existing cameras: cannot read inventory {path}: {error}") from None
    items = data.get("cameras") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise PlanConfigError(f"existing cameras: {path}: expected a list of cameras under 'cameras:'")
    ids: list[str] = []
    lon: list[float] = []
    lat: list[float] = []
    unplaced = 0
    for index, item in enumerate(items):
        try:
            entry = Placed.model_validate(item)
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise PlanConfigError(f"existing cameras: {path}: camera #{index + 1}: {where}: {problem['msg']}") from None
        if entry.location is None:
            unplaced += 1
            continue
        ids.append(entry.camera_id)
        lon.append(entry.location.lon)
        lat.append(entry.location.lat)
    if unplaced:
        report.warnings.append(f"{path.name}: {unplaced} cameras have no location and were left out of coverage")
    if not ids:
        raise PlanConfigError(f"existing cameras: {path}: no camera has a location (lat/lon)")
    kind = layer.camera_type or default_type
    n = len(ids)
    return ExistingCameras(ids, np.array(lon), np.array(lat), [kind] * n, np.full(n, np.nan), np.full(n, np.nan))


def _numeric(frame: pd.DataFrame, column: str | None, path: Path) -> np.ndarray:
    if column is None:
        return np.full(len(frame), np.nan)
    if column not in frame.columns:
        raise PlanConfigError(f"existing cameras: {path}: no column {column!r}; columns are {list(frame.columns)}")
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _types(frame: pd.DataFrame, layer: CameraLayer, known: set[str], default_type: str) -> list[str]:
    if layer.camera_type:
        return [layer.camera_type] * len(frame)
    if layer.type_column and layer.type_column in frame.columns:
        # Values that name a configured camera type use it; anything else (e.g. 설치목적구분 '생활방범')
        # falls back to the default type.
        return [v if v in known else default_type for v in frame[layer.type_column].astype(str).str.strip()]
    return [default_type] * len(frame)


def _from_table(
    frame: gpd.GeoDataFrame, layer: CameraLayer, path: Path, known: set[str], default_type: str, id_column: str | None
) -> ExistingCameras:
    ids = (
        frame[id_column].astype(str).tolist()
        if id_column and id_column in frame.columns
        else [f"{path.stem}-{i + 1}" for i in range(len(frame))]
    )
    points = frame.geometry.representative_point()
    return ExistingCameras(
        ids,
        points.x.to_numpy(),
        points.y.to_numpy(),
        _types(frame, layer, known, default_type),
        _numeric(frame, layer.heading_column, path),
        _numeric(frame, layer.fov_column, path),
    )


def read_existing(config: PlanConfig, layer: CameraLayer, report: ReadReport) -> ExistingCameras:
    path = config.resolve(layer.path)
    if not path.exists():
        raise PlanConfigError(f"existing cameras: file not found: {path}")
    known, default_type = set(config.coverage.camera_types), config.coverage.default_type
    fmt = _detect_format(layer, path)
    if fmt == "inventory" and path.suffix.lower() in (".yaml", ".yml"):
        return _from_inventory_yaml(layer, path, report, default_type)
    if fmt == "korean_standard":
        source = layer.model_copy(
            update={
                "lat_column": layer.lat_column or KOREAN_LAT,
                "lon_column": layer.lon_column or KOREAN_LON,
                "type_column": layer.type_column or KOREAN_PURPOSE,
            }
        )
        frame = read_layer(config, source, report, "existing cameras")
        return _from_table(frame, source, path, known, default_type, None)
    frame = read_layer(config, layer, report, "existing cameras")
    return _from_table(frame, layer, path, known, default_type, "camera_id")


def read_all_existing(config: PlanConfig, report: ReadReport) -> ExistingCameras:
    return ExistingCameras.concat([read_existing(config, layer, report) for layer in config.existing_cameras])


def cameras_frame(cameras: ExistingCameras) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"camera_id": cameras.ids, "camera_type": cameras.camera_type},
        geometry=gpd.points_from_xy(cameras.lon, cameras.lat),
        crs=WGS84,
    )
