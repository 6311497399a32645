"""Real data for the planner tests: libpysal's GeoDaNet (Tempe, AZ) crimes, schools and streets,
reprojected by the test itself so coverage can be recomputed independently of the planner."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import geopandas as gpd
import libpysal.examples
import numpy as np

GEODANET = Path(libpysal.examples.__file__).parent / "geodanet"
UTM12N = "EPSG:32612"  # what the planner should choose for Tempe; the test projects on its own


def real_points(name: str) -> gpd.GeoDataFrame:
    return gpd.read_file(GEODANET / f"{name}.shp")


def street_corner_candidates(every: int = 10) -> gpd.GeoDataFrame:
    """Every `every`-th distinct street end point (junctions), as candidate sites."""
    streets = real_points("streets")
    ends = np.unique(np.round(np.vstack([np.array(g.coords)[[0, -1]] for g in streets.geometry]), 1), axis=0)
    picked = ends[::every]
    return gpd.GeoDataFrame(geometry=gpd.points_from_xy(picked[:, 0], picked[:, 1]), crs=streets.crs)


def write_lonlat_csv(frame: gpd.GeoDataFrame, path: Path, extra: dict[str, list] | None = None) -> Path:
    wgs = frame.to_crs("EPSG:4326")
    table = {"lat": wgs.geometry.y.round(8), "lon": wgs.geometry.x.round(8), **(extra or {})}
    gpd.pd.DataFrame(table).to_csv(path, index=False)
    return path


def metric_xy(path_or_frame: Path | gpd.GeoDataFrame) -> np.ndarray:
    frame = gpd.read_file(path_or_frame) if isinstance(path_or_frame, Path) else path_or_frame
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")
    m = frame.to_crs(UTM12N)
    return np.column_stack([m.geometry.x, m.geometry.y])


def covers(demand_xy: np.ndarray, site_xy: np.ndarray, radius: float) -> np.ndarray:
    """(demand x site) boolean: plain Euclidean distance in metres, no index structures."""
    d = np.sqrt(((demand_xy[:, None, :] - site_xy[None, :, :]) ** 2).sum(axis=2))
    return d <= radius


def brute_force_mclp(cover: np.ndarray, weight: np.ndarray, p: int) -> tuple[float, tuple[int, ...]]:
    best, best_set = -1.0, ()
    for subset in combinations(range(cover.shape[1]), p):
        value = float(weight[cover[:, subset].any(axis=1)].sum())
        if value > best + 1e-9:
            best, best_set = value, subset
    return best, best_set


def brute_force_lscp(cover: np.ndarray, max_k: int = 8) -> int:
    need = cover.any(axis=1)
    for k in range(1, max_k + 1):
        for subset in combinations(range(cover.shape[1]), k):
            if cover[need][:, subset].any(axis=1).all():
                return k
    raise AssertionError("no cover within max_k")
