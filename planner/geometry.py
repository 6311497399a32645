"""Metric projection chosen from the data, demand geometries turned into weighted points, and candidate
sites (given points, every N metres along streets, or H3 cell centres where there is demand)."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import h3
import numpy as np
import shapely
from pyproj import CRS, Transformer

from planner.config import PlanConfigError

KOREA_TM = "EPSG:5186"  # Korea 2000 / Central Belt 2010: the national TM used by Korean public data
_KOREA_BOUNDS = (124.0, 33.0, 132.0, 39.0)  # lon/lat box of South Korea and its seas


def metric_crs(lon: np.ndarray, lat: np.ndarray, configured: str = "auto") -> CRS:
    """EPSG:5186 when the data's centre lies in Korea, else the WGS84 UTM zone of the centre."""
    if configured != "auto":
        try:
            crs = CRS.from_user_input(configured)
        except Exception as error:  # noqa: BLE001 - pyproj's CRSError and friends
            raise PlanConfigError(f"crs: cannot use {configured!r}: {error}") from None
        if not crs.is_projected or crs.axis_info[0].unit_name not in ("metre", "meter"):
            raise PlanConfigError(f"crs: {configured} is not a projected CRS in metres; use auto or e.g. EPSG:5186")
        return crs
    cx, cy = float(np.mean(lon)), float(np.mean(lat))
    x0, y0, x1, y1 = _KOREA_BOUNDS
    if x0 <= cx <= x1 and y0 <= cy <= y1:
        return CRS.from_user_input(KOREA_TM)
    zone = int((cx + 180) // 6) % 60 + 1
    return CRS.from_epsg((32600 if cy >= 0 else 32700) + zone)


def to_metric(crs: CRS, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    return np.column_stack([x, y])


def to_wgs84(crs: CRS, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xy[:, 0], xy[:, 1])
    return np.asarray(lon), np.asarray(lat)


def sample_geometries(geoms: gpd.GeoSeries, spacing_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Points stay points; lines get a point every spacing_m; polygons a grid of spacing_m inside them
    (at least their representative point). Returns (xy, owner row) so a row's weight can be split."""
    values = np.asarray(geoms.values, dtype=object)
    if len(values) and bool(np.all(shapely.get_type_id(values) == 0)):  # all single points: one vector call
        return shapely.get_coordinates(values), np.arange(len(values))
    xy: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    for row, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            continue
        kind = geom.geom_type
        if kind in ("Point", "MultiPoint"):
            pts = shapely.get_coordinates(geom)
        elif kind in ("LineString", "MultiLineString", "LinearRing"):
            pts = _along(geom, spacing_m)
        else:
            x0, y0, x1, y1 = geom.bounds
            gx, gy = np.meshgrid(
                np.arange(x0 + spacing_m / 2, x1, spacing_m), np.arange(y0 + spacing_m / 2, y1, spacing_m)
            )
            grid = shapely.points(gx.ravel(), gy.ravel())
            inside = grid[shapely.contains_xy(geom, gx.ravel(), gy.ravel())] if grid.size else grid
            pts = (
                shapely.get_coordinates(inside) if len(inside) else shapely.get_coordinates(geom.representative_point())
            )
        xy.append(pts[:, :2])
        owner.append(np.full(len(pts), row))
    if not xy:
        return np.empty((0, 2)), np.empty(0, dtype=int)
    return np.vstack(xy), np.concatenate(owner)


def _along(geom: shapely.Geometry, spacing_m: float) -> np.ndarray:
    pts = []
    for part in getattr(geom, "geoms", [geom]):
        distances = np.arange(0.0, part.length + 1e-9, spacing_m) if part.length > 0 else np.array([0.0])
        pts.append(shapely.get_coordinates(shapely.line_interpolate_point(part, distances)))
    return np.vstack(pts)


@dataclass
class CandidateSites:
    xy: np.ndarray  # metric coordinates
    source: list[str]  # "given:<file>", "street", "h3:<cell>"
    cost: np.ndarray
    heading_deg: np.ndarray | None = None  # set when the new camera type has a field of view under 360°

    def __len__(self) -> int:
        return len(self.xy)

    def oriented(self, fov_deg: float) -> CandidateSites:
        """A camera with a sector FOV can face any way: each site becomes one option per heading
        (fov apart, covering the full circle). Two options at one site = two cameras on one pole."""
        if fov_deg >= 360:
            return self
        headings = np.arange(0.0, 360.0, fov_deg)
        n = len(self.xy)
        return CandidateSites(
            np.repeat(self.xy, len(headings), axis=0),
            [s for s in self.source for _ in headings],
            np.repeat(self.cost, len(headings)),
            np.tile(headings, n),
        )


def street_candidates(streets_metric: gpd.GeoSeries, spacing_m: float) -> np.ndarray:
    pts = [
        _along(g, spacing_m)
        for g in streets_metric
        if g is not None and not g.is_empty and g.geom_type in ("LineString", "MultiLineString")
    ]
    if not pts:
        raise PlanConfigError("candidates.streets: the street file has no line geometries")
    return np.vstack(pts)


def h3_candidates(lon: np.ndarray, lat: np.ndarray, resolution: int) -> list[str]:
    """Centres of the H3 cells that hold demand and their neighbours (a camera next door still sees it)."""
    cells = {h3.latlng_to_cell(float(a), float(o), resolution) for a, o in zip(lat, lon, strict=False)}
    ring = {n for cell in cells for n in h3.grid_disk(cell, 1)}
    return sorted(ring)


def dedupe(xy: np.ndarray, tolerance_m: float = 1.0) -> np.ndarray:
    """Indices of the first point of each tolerance-sized cell (street vertices repeat at junctions)."""
    keys = np.round(xy / tolerance_m).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return np.sort(first)
