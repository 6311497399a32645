"""The planning run: inputs -> metric projection -> coverage today -> hot spots -> new sites (MCLP) and
the camera count that covers everything (LSCP). Pure: files in, a PlanResult out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
from pyproj import CRS
from scipy.sparse import csc_matrix
from scipy.spatial import cKDTree

from planner.cameras import ExistingCameras, read_all_existing
from planner.config import PlanConfig, PlanConfigError
from planner.coverage import coverage_matrix, covered_by_any
from planner.geometry import (
    CandidateSites,
    dedupe,
    h3_candidates,
    metric_crs,
    sample_geometries,
    street_candidates,
    to_metric,
    to_wgs84,
)
from planner.hotspots import HotspotGrid, hotspot_grid
from planner.layers import ReadReport, read_layer, row_weights
from planner.optimize import Selection, SetCover, reduce_problem, solve_lscp, solve_mclp


@dataclass
class Demand:
    xy: np.ndarray
    weight: np.ndarray
    layer: np.ndarray  # index into config.demand
    names: list[str]
    kinds: list[str]


@dataclass
class LayerFigures:
    name: str
    kind: str
    points: int
    total: float
    before: float
    after: float
    coverable: float  # what any candidate could reach (the ceiling for new cameras)


@dataclass
class PlanResult:
    config: PlanConfig
    crs: CRS
    demand: Demand
    cameras: ExistingCameras
    camera_xy: np.ndarray
    candidates: CandidateSites
    covered_before: np.ndarray
    covered_after: np.ndarray
    selection: Selection
    set_cover: SetCover | None
    sites: pd.DataFrame  # ranked proposed sites with what each newly covers
    layers: list[LayerFigures]
    hotspots: HotspotGrid | None
    streets: list = field(default_factory=list)  # metric street lines, drawn on the map
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def _read_demand(config: PlanConfig, report: ReadReport) -> tuple[list[gpd.GeoDataFrame], CRS]:
    frames = [read_layer(config, layer, report, f"demand layer {layer.name!r}") for layer in config.demand]
    centres = pd.concat([f.geometry.representative_point() for f in frames])
    return frames, metric_crs(centres.x.to_numpy(), centres.y.to_numpy(), config.crs)


def build_demand(config: PlanConfig, frames: list[gpd.GeoDataFrame], crs: CRS) -> Demand:
    spacing = min(t.radius_m for t in config.coverage.camera_types.values()) / 2
    xy_parts, weight_parts, layer_parts = [], [], []
    for index, (layer, frame) in enumerate(zip(config.demand, frames, strict=False)):
        rows = row_weights(frame, layer.weight_column, layer.path) * layer.weight
        xy, owner = sample_geometries(frame.to_crs(crs).geometry, spacing)
        per_row = np.bincount(owner, minlength=len(frame))
        xy_parts.append(xy)
        weight_parts.append(rows[owner] / per_row[owner])  # a polygon's weight is split over its points
        layer_parts.append(np.full(len(xy), index))
    return Demand(
        np.vstack(xy_parts),
        np.concatenate(weight_parts),
        np.concatenate(layer_parts),
        [d.name for d in config.demand],
        [d.kind for d in config.demand],
    )


def build_candidates(
    config: PlanConfig, crs: CRS, demand: Demand, report: ReadReport, streets_out: list | None = None
) -> CandidateSites:
    new_type = config.coverage.camera_types[config.coverage.new_camera_type]
    xy, source, cost = [], [], []
    for points in config.candidates.points:
        frame = read_layer(config, points, report, "candidate sites").to_crs(crs)
        pts = frame.geometry.representative_point()
        xy.append(np.column_stack([pts.x, pts.y]))
        name = config.resolve(points.path).name
        source += [f"given:{name}"] * len(frame)
        cost.append(
            row_weights(frame, points.cost_column, points.path)
            if points.cost_column
            else np.full(len(frame), new_type.cost)
        )
    if config.candidates.streets is not None:
        streets = config.candidates.streets
        frame = read_layer(config, streets, report, "candidates.streets").to_crs(crs)
        pts = street_candidates(frame.geometry, streets.spacing_m)
        if streets_out is not None:
            streets_out.extend(frame.geometry)
        xy.append(pts)
        source += ["street"] * len(pts)
        cost.append(np.full(len(pts), new_type.cost))
    if config.candidates.h3 is not None:
        lon, lat = to_wgs84(crs, demand.xy)
        cells = h3_candidates(lon, lat, config.candidates.h3.resolution)
        centres = np.array([h3.cell_to_latlng(c) for c in cells])
        xy.append(to_metric(crs, centres[:, 1], centres[:, 0]))
        source += [f"h3:{c}" for c in cells]
        cost.append(np.full(len(cells), new_type.cost))
    all_xy = np.vstack(xy)
    keep = dedupe(all_xy)
    sites = CandidateSites(all_xy[keep], [source[i] for i in keep], np.concatenate(cost)[keep])
    return sites.oriented(new_type.fov_deg)


def _check_overlap(what: str, xy: np.ndarray, demand_xy: np.ndarray, margin_m: float = 5000.0) -> None:
    """Layers far from the demand almost always mean a wrong CRS or swapped columns."""
    if len(xy) == 0:
        return
    lo, hi = demand_xy.min(axis=0) - margin_m, demand_xy.max(axis=0) + margin_m
    inside = np.all((xy >= lo) & (xy <= hi), axis=1)
    if not inside.any():
        centre = np.linalg.norm(xy.mean(axis=0) - demand_xy.mean(axis=0)) / 1000
        raise PlanConfigError(
            f"{what} lie about {centre:,.0f} km from the demand layers: check their CRS (crs:) or lat/lon columns"
        )


def existing_coverage(
    config: PlanConfig, cameras: ExistingCameras, camera_xy: np.ndarray, demand: Demand, tree: cKDTree, obstacles: list
) -> np.ndarray:
    if len(cameras) == 0:
        return np.zeros(len(demand.xy), dtype=bool)
    types = config.coverage.camera_types
    radius = np.array([types[t].radius_m for t in cameras.camera_type])
    fov = np.where(np.isnan(cameras.fov_deg), [types[t].fov_deg for t in cameras.camera_type], cameras.fov_deg)
    return covered_by_any(coverage_matrix(demand.xy, camera_xy, radius, cameras.heading_deg, fov, obstacles, tree))


def _site_table(
    result_crs: CRS,
    candidates: CandidateSites,
    chosen: list[int],
    matrix: csc_matrix,
    demand: Demand,
    covered_before: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    covered = covered_before.copy()
    rows = []
    lon, lat = to_wgs84(result_crs, candidates.xy[chosen]) if chosen else (np.empty(0), np.empty(0))
    total = float(demand.weight.sum())
    for rank, j in enumerate(chosen):
        seen = matrix.indices[matrix.indptr[j] : matrix.indptr[j + 1]]
        new = seen[~covered[seen]]
        covered[new] = True
        per_layer = np.bincount(demand.layer[new], weights=demand.weight[new], minlength=len(demand.names))
        rows.append(
            {
                "rank": rank + 1,
                "site_id": f"site-{j}",
                "lat": round(float(lat[rank]), 7),
                "lon": round(float(lon[rank]), 7),
                "source": candidates.source[j],
                "heading_deg": "" if candidates.heading_deg is None else float(candidates.heading_deg[j]),
                "cost": float(candidates.cost[j]),
                "new_weight": round(float(per_layer.sum()), 4),
                "new_points": len(new),
                **{f"new_{name}": round(float(v), 4) for name, v in zip(demand.names, per_layer, strict=False)},
                "coverage_after_pct": round(100 * float(demand.weight[covered].sum()) / total, 2),
            }
        )
    columns = [
        "rank",
        "site_id",
        "lat",
        "lon",
        "source",
        "heading_deg",
        "cost",
        "new_weight",
        "new_points",
        *[f"new_{n}" for n in demand.names],
        "coverage_after_pct",
    ]
    return pd.DataFrame(rows, columns=columns), covered


def run_plan(config: PlanConfig) -> PlanResult:
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    report = ReadReport()
    frames, crs = _read_demand(config, report)
    demand = build_demand(config, frames, crs)
    cameras = read_all_existing(config, report)
    camera_xy = to_metric(crs, cameras.lon, cameras.lat) if len(cameras) else np.empty((0, 2))
    _check_overlap("existing cameras", camera_xy, demand.xy)
    obstacles: list = []
    if config.coverage.obstacles is not None:
        obstacles = list(read_layer(config, config.coverage.obstacles, report, "obstacles").to_crs(crs).geometry)
    streets: list = []
    candidates = build_candidates(config, crs, demand, report, streets)
    _check_overlap("candidate sites", candidates.xy, demand.xy)
    budget = config.budget
    if budget.cameras is not None and budget.cameras > len(candidates):
        raise PlanConfigError(
            f"budget.cameras = {budget.cameras} is larger than the {len(candidates)} candidate "
            "sites: lower the budget or add candidates (streets spacing_m, h3 resolution)"
        )
    lap("read_s")

    tree = cKDTree(demand.xy)
    covered_before = existing_coverage(config, cameras, camera_xy, demand, tree, obstacles)
    lap("existing_coverage_s")
    new_type = config.coverage.camera_types[config.coverage.new_camera_type]
    fov = None if candidates.heading_deg is None else np.full(len(candidates), new_type.fov_deg)
    matrix = coverage_matrix(
        demand.xy,
        candidates.xy,
        np.full(len(candidates), new_type.radius_m),
        candidates.heading_deg,
        fov,
        obstacles=obstacles,
        tree=tree,
    )
    lap("candidate_coverage_s")

    remaining = ~covered_before
    reduced = reduce_problem(matrix[remaining], demand.weight[remaining])
    lap("reduce_s")
    count_budget = budget.cameras is not None
    capacity = float(budget.cameras if budget.cameras is not None else budget.total_cost or 0.0)
    cost = np.ones(len(reduced.sites)) if count_budget else candidates.cost[reduced.sites]
    if budget.cameras is not None and budget.cameras > len(reduced.sites):
        report.warnings.append(
            f"only {len(reduced.sites)} candidates cover any demand not yet covered; "
            f"the other {budget.cameras - len(reduced.sites)} cameras of the budget add nothing"
        )
    selection = solve_mclp(
        reduced,
        cost,
        capacity,
        count_budget,
        config.solver.time_limit_s,
        config.solver.mip_rel_gap,
        config.solver.exact_max_cells,
    )
    lap("mclp_s")
    set_cover = (
        solve_lscp(reduced, config.solver.time_limit_s, config.solver.exact_max_cells) if config.solver.lscp else None
    )
    lap("lscp_s")

    sites, covered_after = _site_table(crs, candidates, selection.sites, matrix, demand, covered_before)
    coverable = covered_before | covered_by_any(matrix)
    layers = []
    for index, (name, kind) in enumerate(zip(demand.names, demand.kinds, strict=False)):
        mine = demand.layer == index
        w = demand.weight
        layers.append(
            LayerFigures(
                name,
                kind,
                int(mine.sum()),
                float(w[mine].sum()),
                float(w[mine & covered_before].sum()),
                float(w[mine & covered_after].sum()),
                float(w[mine & coverable].sum()),
            )
        )
    hotspots = None
    if config.hotspots.enabled:
        hotspots = hotspot_grid(demand.xy, demand.weight, config.hotspots)
    lap("hotspots_s")
    return PlanResult(
        config,
        crs,
        demand,
        cameras,
        camera_xy,
        candidates,
        covered_before,
        covered_after,
        selection,
        set_cover,
        sites,
        layers,
        hotspots,
        streets,
        report.warnings + selection.notes,
        timings,
    )
