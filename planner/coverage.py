"""Which demand points each camera (or candidate site) sees: a disc of the type's radius, narrowed to a
field-of-view sector when the heading is known, and blocked by obstacle polygons on the line of sight."""

from __future__ import annotations

import numpy as np
import shapely
from scipy.sparse import csc_matrix
from scipy.spatial import cKDTree


def coverage_matrix(
    demand_xy: np.ndarray,
    site_xy: np.ndarray,
    radius_m: np.ndarray,
    heading_deg: np.ndarray | None = None,
    fov_deg: np.ndarray | None = None,
    obstacles: list[shapely.Geometry] | None = None,
    tree: cKDTree | None = None,
) -> csc_matrix:
    """Boolean (demand x site) sparse matrix: True where the site sees the demand point."""
    n, m = len(demand_xy), len(site_xy)
    if n == 0 or m == 0:
        return csc_matrix((n, m), dtype=bool)
    tree = tree if tree is not None else cKDTree(demand_xy)
    rows_parts: list[np.ndarray] = []
    cols_parts: list[np.ndarray] = []
    for radius in np.unique(radius_m):
        sites = np.flatnonzero(radius_m == radius)
        hits = tree.query_ball_point(site_xy[sites], r=float(radius), workers=-1)
        lengths = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
        if lengths.sum() == 0:
            continue
        rows_parts.append(np.concatenate([np.asarray(h, dtype=np.int64) for h in hits if h]))
        cols_parts.append(np.repeat(sites, lengths))
    if not rows_parts:
        return csc_matrix((n, m), dtype=bool)
    rows, cols = np.concatenate(rows_parts), np.concatenate(cols_parts)
    keep = np.ones(len(rows), dtype=bool)
    if heading_deg is not None and fov_deg is not None:
        keep &= _in_sector(demand_xy[rows], site_xy[cols], heading_deg[cols], fov_deg[cols])
    if obstacles:
        keep &= ~_blocked(demand_xy[rows], site_xy[cols], obstacles, keep)
    rows, cols = rows[keep], cols[keep]
    return csc_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(n, m))


def _in_sector(points: np.ndarray, sites: np.ndarray, heading: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Bearing (clockwise from north) within fov/2 of the heading; unknown heading or fov >= 360 = full circle."""
    dx, dy = points[:, 0] - sites[:, 0], points[:, 1] - sites[:, 1]
    bearing = np.degrees(np.arctan2(dx, dy)) % 360.0
    off = np.abs((bearing - np.nan_to_num(heading) + 180.0) % 360.0 - 180.0)
    full = np.isnan(heading) | np.isnan(fov) | (fov >= 360.0) | (np.hypot(dx, dy) < 1e-6)
    return full | (off <= np.nan_to_num(fov, nan=360.0) / 2.0)


def _blocked(
    points: np.ndarray, sites: np.ndarray, obstacles: list[shapely.Geometry], consider: np.ndarray
) -> np.ndarray:
    """Line of sight from the site to the point crosses an obstacle's interior (touching an edge is fine)."""
    blocked = np.zeros(len(points), dtype=bool)
    index = np.flatnonzero(consider)
    if len(index) == 0:
        return blocked
    lines = shapely.linestrings(np.stack([sites[index], points[index]], axis=1))
    tree = shapely.STRtree(obstacles)
    line_idx, obstacle_idx = tree.query(lines, predicate="intersects")
    if len(line_idx):
        crosses = shapely.intersects(
            lines[line_idx], np.asarray(obstacles, dtype=object)[obstacle_idx]
        ) & ~shapely.touches(lines[line_idx], np.asarray(obstacles, dtype=object)[obstacle_idx])
        blocked[index[np.unique(line_idx[crosses])]] = True
    return blocked


def covered_by_any(matrix: csc_matrix) -> np.ndarray:
    """Per demand point: seen by at least one column."""
    if matrix.shape[1] == 0:
        return np.zeros(matrix.shape[0], dtype=bool)
    return np.asarray(matrix.sum(axis=1)).ravel() > 0
