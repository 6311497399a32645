"""Reading the planner's inputs into GeoDataFrames in WGS84, with clear errors on bad input.

CSV (UTF-8 or CP949, English or Korean headers), GeoJSON, Shapefile and anything else GDAL reads.
Rows that cannot be placed (no coordinates) are skipped and counted in `warnings`, never silently;
a layer with no usable row is an error.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from planner.config import LayerSource, PlanConfig, PlanConfigError

WGS84 = "EPSG:4326"
LAT_NAMES = ("lat", "latitude", "위도", "wgs84위도", "y좌표", "y")
LON_NAMES = ("lon", "lng", "long", "longitude", "경도", "wgs84경도", "x좌표", "x")


@dataclass
class ReadReport:
    """What reading skipped or assumed, for the planner's report."""

    warnings: list[str] = field(default_factory=list)


def decode_csv(raw: bytes, path: Path, encoding: str | None) -> str:
    """Korean public data comes as UTF-8 (often with a BOM) or CP949 (EUC-KR superset): try both."""
    for name in [encoding] if encoding else ["utf-8-sig", "cp949"]:
        try:
            return raw.decode(name)
        except UnicodeDecodeError:
            continue
        except LookupError:
            raise PlanConfigError(f"{path}: unknown encoding {encoding!r}") from None
    tried = encoding or "UTF-8 and CP949"
    raise PlanConfigError(f"{path}: cannot decode as {tried}; set encoding: for this file")


def _find_column(columns: list[str], configured: str | None, names: tuple[str, ...], path: Path, what: str) -> str:
    if configured:
        if configured not in columns:
            raise PlanConfigError(f"{path}: no column {configured!r} for {what}; columns are {columns}")
        return configured
    normal = {c.strip().lower().replace(" ", "").replace("_", ""): c for c in columns}
    for name in names:
        if name.replace("_", "") in normal:
            return normal[name.replace("_", "")]
    raise PlanConfigError(
        f"{path}: no coordinates: cannot find a {what} column among {columns}; "
        f"name it with {'lat_column' if what == 'latitude' else 'lon_column'}:"
    )


def _read_csv(source: LayerSource, path: Path, report: ReadReport) -> gpd.GeoDataFrame:
    text = decode_csv(path.read_bytes(), path, source.encoding)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise PlanConfigError(f"{path}: not a readable CSV: {error}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    columns = list(frame.columns)
    lat_col = _find_column(columns, source.lat_column, LAT_NAMES, path, "latitude")
    lon_col = _find_column(columns, source.lon_column, LON_NAMES, path, "longitude")
    lat = pd.to_numeric(frame[lat_col].str.strip(), errors="coerce")
    lon = pd.to_numeric(frame[lon_col].str.strip(), errors="coerce")
    placed = lat.notna() & lon.notna()
    if not placed.all():
        lines = [str(i + 2) for i in np.flatnonzero(~placed.to_numpy())[:5]]
        report.warnings.append(
            f"{path.name}: {int((~placed).sum())} of {len(frame)} rows have no usable "
            f"coordinates and were skipped (lines {', '.join(lines)}...)"
        )
    frame = frame[placed.to_numpy()]
    for column in frame.columns:  # numbers become numbers so `where: hour >= 20` works; ids stay text
        if column == "camera_id":
            continue
        filled = frame[column].str.strip() != ""
        numbers = pd.to_numeric(frame[column].where(filled), errors="coerce")
        if filled.any() and numbers[filled].notna().all():
            frame[column] = numbers
    geometry = gpd.points_from_xy(lon[placed], lat[placed])
    return gpd.GeoDataFrame(frame.reset_index(drop=True), geometry=geometry, crs=source.crs or WGS84)


def _check_wgs84(frame: gpd.GeoDataFrame, path: Path, declared: str | None) -> None:
    if len(frame) == 0:
        return
    xmin, ymin, xmax, ymax = frame.total_bounds
    if not np.all(np.isfinite([xmin, ymin, xmax, ymax])) or xmin < -180 or xmax > 180 or ymin < -90 or ymax > 90:
        said = f"declared as {declared}" if declared else "read as WGS84 longitude/latitude (no CRS given)"
        raise PlanConfigError(
            f"{path}: wrong CRS: coordinates {said} fall outside longitude/latitude range "
            f"(x {xmin:.6g}..{xmax:.6g}, y {ymin:.6g}..{ymax:.6g}); give the file's real CRS with crs: "
            f"(e.g. EPSG:5186 for Korean TM metres) or swap lat/lon columns"
        )


def read_layer(config: PlanConfig, source: LayerSource, report: ReadReport, what: str) -> gpd.GeoDataFrame:
    """Any supported file -> GeoDataFrame in WGS84 with its attribute columns; errors name the file."""
    path = config.resolve(source.path)
    if not path.exists():
        raise PlanConfigError(f"{what}: file not found: {path}")
    if path.suffix.lower() in (".csv", ".txt"):
        frame = _read_csv(source, path, report)
    else:
        try:
            frame = gpd.read_file(path)
        except Exception as error:  # noqa: BLE001 - pyogrio/GDAL raise their own error family
            raise PlanConfigError(f"{what}: cannot read {path}: {error}") from None
        if source.crs:
            frame = frame.set_crs(source.crs, allow_override=True)
        elif frame.crs is None:
            frame = frame.set_crs(WGS84)
        frame = frame[~(frame.geometry.is_empty | frame.geometry.isna())]
    try:
        frame = frame.to_crs(WGS84)
    except Exception as error:  # noqa: BLE001 - pyproj raises several types for unusable CRSs
        raise PlanConfigError(f"{what}: {path}: cannot use CRS {source.crs or frame.crs}: {error}") from None
    _check_wgs84(frame, path, source.crs)
    if source.where:
        try:
            frame = frame.query(source.where)
        except Exception as error:  # noqa: BLE001 - pandas query raises anything the expression does
            raise PlanConfigError(
                f"{what}: {path}: where {source.where!r} failed: {error}; columns are {list(frame.columns)}"
            ) from None
    if len(frame) == 0:
        raise PlanConfigError(f"{what}: {path}: the layer is empty" + (" after where:" if source.where else ""))
    return frame.reset_index(drop=True)


def row_weights(frame: gpd.GeoDataFrame, column: str | None, path: str) -> np.ndarray:
    if column is None:
        return np.ones(len(frame))
    if column not in frame.columns:
        raise PlanConfigError(f"{path}: no weight column {column!r}; columns are {list(frame.columns)}")
    weights = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        raise PlanConfigError(
            f"{path}: weight column {column!r} has {int(bad.sum())} missing or negative values "
            f"(first at row {int(np.flatnonzero(bad)[0]) + 1})"
        )
    return weights
