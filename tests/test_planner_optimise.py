"""Camera placement on real data (libpysal GeoDaNet, Tempe AZ): optimal sites checked by brute force,
coverage recomputed independently, existing cameras reducing what new ones must cover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csc_matrix

from planner.config import parse_config
from planner.plan import PlanResult, run_plan
from tests.planner_helpers import (
    GEODANET,
    brute_force_lscp,
    brute_force_mclp,
    covers,
    metric_xy,
    real_points,
    street_corner_candidates,
    write_lonlat_csv,
)

RADIUS = 150.0
SCHOOL_WEIGHT = 10.0


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("plan")
    candidates = street_corner_candidates(every=10)
    cand_csv = write_lonlat_csv(
        candidates, folder / "candidates.csv", {"cost": [1.0 + (i % 3 == 0) for i in range(len(candidates))]}
    )
    crimes, schools = metric_xy(GEODANET / "crimes.shp"), metric_xy(GEODANET / "schools.shp")
    demand = np.vstack([crimes, schools])
    weight = np.concatenate([np.ones(len(crimes)), np.full(len(schools), SCHOOL_WEIGHT)])
    existing = real_points("schools").iloc[[0, 3]]  # two schools already have a camera
    cams_csv = write_lonlat_csv(existing, folder / "cams.csv", {"camera_id": ["cam-a", "cam-b"]})
    return {
        "folder": folder,
        "cand_csv": cand_csv,
        "cand_xy": metric_xy(candidates),
        "demand": demand,
        "weight": weight,
        "n_crimes": len(crimes),
        "cams_csv": cams_csv,
        "cam_xy": metric_xy(existing),
        "cost": np.array([1.0 + (i % 3 == 0) for i in range(len(candidates))]),
    }


def _plan(case: dict, budget: dict, existing: bool = False, **solver: object) -> PlanResult:
    config = {
        "name": "test",
        "demand": [
            {"name": "crimes", "kind": "crime", "path": "libpysal:geodanet/crimes.shp"},
            {"name": "schools", "kind": "vulnerable", "path": "libpysal:geodanet/schools.shp", "weight": SCHOOL_WEIGHT},
        ],
        "candidates": {"points": [{"path": str(case["cand_csv"]), "cost_column": "cost"}]},
        "coverage": {"camera_types": {"fixed": {"radius_m": RADIUS}}},
        "budget": budget,
        "solver": {"time_limit_s": 60, **solver},
        "hotspots": {"enabled": False},
    }
    if existing:
        config["existing_cameras"] = [{"path": str(case["cams_csv"]), "format": "points"}]
    return run_plan(parse_config(config, case["folder"]))


def _chosen(result: PlanResult) -> list[int]:
    return [int(s.removeprefix("site-")) for s in result.sites["site_id"]]


def test_projection_and_candidates_match_the_independent_recomputation(case: dict) -> None:
    result = _plan(case, {"cameras": 2})
    assert result.crs.to_epsg() == 32612  # Tempe: UTM zone 12 north, chosen from the data's centre
    assert len(result.candidates) == len(case["cand_xy"])
    assert np.abs(result.candidates.xy - case["cand_xy"]).max() < 0.01
    assert np.abs(result.demand.xy - case["demand"]).max() < 0.01


@pytest.mark.parametrize("p", [1, 3])
def test_mclp_matches_brute_force_optimum(case: dict, p: int) -> None:
    cover = covers(case["demand"], case["cand_xy"], RADIUS)
    best, _ = brute_force_mclp(cover, case["weight"], p)
    result = _plan(case, {"cameras": p})
    chosen = _chosen(result)
    assert len(chosen) == p
    recomputed = float(case["weight"][cover[:, chosen].any(axis=1)].sum())
    assert recomputed == pytest.approx(best)
    assert result.selection.covered_weight == pytest.approx(best)
    assert result.selection.gap == pytest.approx(0.0, abs=1e-6)
    # Before/after per layer, recomputed from plain distances.
    crimes = slice(0, case["n_crimes"])
    assert result.layers[0].before == 0
    assert result.layers[0].after == pytest.approx(cover[crimes][:, chosen].any(axis=1).sum())
    # Ranked: each site's newly covered weight is non-increasing down the list.
    assert list(result.sites["new_weight"]) == sorted(result.sites["new_weight"], reverse=True)


def test_existing_cameras_reduce_what_new_ones_must_cover(case: dict) -> None:
    p = 3
    cover = covers(case["demand"], case["cand_xy"], RADIUS)
    seen_today = covers(case["demand"], case["cam_xy"], RADIUS).any(axis=1)
    assert seen_today.any()
    with_cams = _plan(case, {"cameras": p}, existing=True)
    assert np.array_equal(with_cams.covered_before, seen_today)
    total = float(case["weight"].sum())
    before = sum(f.before for f in with_cams.layers)
    assert before == pytest.approx(case["weight"][seen_today].sum())
    # Optimum of what is left, by brute force over the demand the existing cameras do not see.
    best_left, _ = brute_force_mclp(cover[~seen_today], case["weight"][~seen_today], p)
    assert with_cams.selection.covered_weight == pytest.approx(best_left)
    after = float(case["weight"][seen_today | cover[:, _chosen(with_cams)].any(axis=1)].sum())
    assert sum(f.after for f in with_cams.layers) == pytest.approx(after)
    assert after <= total
    # New sites only get credit for demand the existing cameras miss.
    assert with_cams.sites["new_weight"].sum() == pytest.approx(best_left)
    without = _plan(case, {"cameras": p})
    assert with_cams.selection.covered_weight < without.selection.covered_weight
    assert with_cams.set_cover is not None and without.set_cover is not None
    assert len(with_cams.set_cover.sites) <= len(without.set_cover.sites)


def test_lscp_is_the_fewest_cameras_that_cover_everything_reachable(case: dict) -> None:
    """A 700 m corner of the district, so brute force over every subset of candidates stays quick."""
    crimes, corners = real_points("crimes"), street_corner_candidates(every=2)
    crime_xy, corner_xy = metric_xy(crimes), metric_xy(corners)
    lo = crime_xy.min(axis=0)
    in_box = np.all(crime_xy < lo + 700, axis=1)
    near = np.all(corner_xy < lo + 800, axis=1)
    radius = 300.0
    demand_csv = write_lonlat_csv(crimes[in_box], case["folder"] / "corner_crimes.csv")
    sites_csv = write_lonlat_csv(corners[near], case["folder"] / "corner_sites.csv")
    config = {
        "demand": [{"name": "crimes", "path": str(demand_csv)}],
        "candidates": {"points": [{"path": str(sites_csv)}]},
        "coverage": {"camera_types": {"fixed": {"radius_m": radius}}},
        "budget": {"cameras": 1},
        "hotspots": {"enabled": False},
    }
    result = run_plan(parse_config(config, case["folder"]))
    cover = covers(crime_xy[in_box], corner_xy[near], radius)
    assert result.set_cover is not None
    assert len(result.set_cover.sites) == brute_force_lscp(cover) > 1
    assert cover[:, result.set_cover.sites].any(axis=1).sum() == cover.any(axis=1).sum()


def test_cost_budget_matches_brute_force(case: dict) -> None:
    from itertools import combinations

    cover, cost, weight = covers(case["demand"], case["cand_xy"], RADIUS), case["cost"], case["weight"]
    budget = 4.0
    best = 0.0
    for k in range(1, 5):
        for subset in combinations(range(len(cost)), k):
            if cost[list(subset)].sum() <= budget:
                best = max(best, float(weight[cover[:, subset].any(axis=1)].sum()))
    result = _plan(case, {"total_cost": budget})
    chosen = _chosen(result)
    assert cost[chosen].sum() <= budget
    assert float(weight[cover[:, chosen].any(axis=1)].sum()) == pytest.approx(best)


def test_past_the_dense_limit_the_sparse_model_still_finds_the_optimum(case: dict) -> None:
    """Forced past spopt's dense size limit: greedy start + the sparse HiGHS model reach the brute-force optimum."""
    p = 3
    cover = covers(case["demand"], case["cand_xy"], RADIUS)
    best, _ = brute_force_mclp(cover, case["weight"], p)
    result = _plan(case, {"cameras": p}, exact_max_cells=1)
    sel = result.selection
    assert "sparse" in sel.method
    assert float(case["weight"][cover[:, _chosen(result)].any(axis=1)].sum()) == pytest.approx(best)
    assert sel.upper_bound >= best - 1e-9 and sel.gap == pytest.approx(0.0, abs=1e-4)
    assert result.set_cover is not None and "sparse" in result.set_cover.method


def test_greedy_and_its_submodular_bound_bracket_the_optimum(case: dict) -> None:
    from planner.optimize import greedy, reduce_problem, upper_bound

    cover, weight = covers(case["demand"], case["cand_xy"], RADIUS), case["weight"]
    reduced = reduce_problem(csc_matrix(cover), weight)
    ones = np.ones(len(reduced.sites))
    for p in (1, 2, 3):
        best, _ = brute_force_mclp(cover, weight, p)
        picks = greedy(reduced.patterns, reduced.weight, ones, float(p), count_budget=True)
        value = float(weight[cover[:, reduced.sites[picks]].any(axis=1)].sum())
        bound = upper_bound(reduced.patterns, reduced.weight, ones, float(p), [[], picks])
        assert (1 - 1 / np.e) * best <= value <= best + 1e-9 <= bound + 2e-9


def test_example_plan_runs_and_finds_hot_spots(tmp_path: Path) -> None:
    from planner.config import load_config
    from planner.outputs import write_outputs

    repo = Path(__file__).resolve().parents[1]
    result = run_plan(load_config(repo / "samples/planning/example.yaml"))
    grid = result.hotspots
    assert grid is not None and grid.hot.any()
    densest = np.unravel_index(np.argmax(grid.weight), grid.shape)
    assert grid.z[densest] > 0
    written = write_outputs(result, tmp_path)
    assert set(written) >= {"sites.csv", "sites.geojson", "map.png", "map.html", "report.md"}
    assert "gap" in (tmp_path / "report.md").read_text()


def test_generated_city_scale_path_is_consistent() -> None:
    """The benchmark's code path at CI size: reduction, greedy + exact on the reduced set, stated bounds."""
    from bench.planner import run_case

    row = run_case(20_000, 2_000, 3_000, budget=30, time_limit_s=30)
    assert row["patterns"] <= 20_000 and row["useful_candidates"] <= 3_000
    assert 0 < row["covered_weight"] <= row["upper_bound"]
    assert 0 <= row["gap_pct"] < 10
    assert row["lscp_cameras"] >= row["lscp_lower_bound"] > 0


def test_sector_cameras_are_aimed_where_the_demand_is(case: dict) -> None:
    """New cameras with a 90° view: each candidate is offered facing N, E, S and W; the optimum faces
    the side of the real crimes that the independent bearing computation says holds the most."""
    fov, radius = 90.0, 400.0
    site = case["cand_xy"][[5]]
    crimes = case["demand"][: case["n_crimes"]]
    dx, dy = crimes[:, 0] - site[0, 0], crimes[:, 1] - site[0, 1]
    bearing = np.degrees(np.arctan2(dx, dy)) % 360
    within = np.hypot(dx, dy) <= radius
    seen = {h: int((within & (np.abs((bearing - h + 180) % 360 - 180) <= fov / 2)).sum()) for h in (0, 90, 180, 270)}
    config = {
        "demand": [{"name": "crimes", "path": "libpysal:geodanet/crimes.shp"}],
        "candidates": {
            "points": [
                {"path": str(write_lonlat_csv(street_corner_candidates(10).iloc[[5]], case["folder"] / "one.csv"))}
            ]
        },
        "coverage": {"camera_types": {"fixed": {"radius_m": radius, "fov_deg": fov}}},
        "budget": {"cameras": 1},
        "hotspots": {"enabled": False},
        "solver": {"lscp": False},
    }
    result = run_plan(parse_config(config, case["folder"]))
    assert len(result.candidates) == 4
    assert result.sites["heading_deg"].tolist() == [float(max(seen, key=seen.get))]
    assert result.sites["new_weight"].tolist() == [max(seen.values())]
