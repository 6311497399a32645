"""`python -m bench.planner [--quick]`: how camera placement time grows with each size.

Generated city (about Seoul's area, clustered demand like real crime), one size varied at a time from a
base case, then the whole-city case (100,000 existing cameras, 1,000,000 demand points, 50,000
candidates). Runs the planner's core (coverage, reduction, MCLP, LSCP, hot spots) on arrays; reading
files is not included. Writes docs/benchmarks/planner.json and planner.md.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import numpy as np
import typer

from bench.common import RESULTS_DIR, machine_description, now_iso
from planner.config import Hotspots, Solver
from planner.coverage import coverage_matrix, covered_by_any
from planner.hotspots import hotspot_grid
from planner.optimize import reduce_problem, solve_lscp, solve_mclp

CITY_M = (30_000.0, 20_000.0)  # 600 km², about Seoul
RADIUS_M = 50.0
app = typer.Typer(add_completion=False)


def city(n_demand: int, n_cameras: int, n_candidates: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.uniform((0, 0), CITY_M, size=(400, 2))
    clustered = int(n_demand * 0.7)
    demand = np.vstack(
        [
            centres[rng.integers(0, 400, clustered)] + rng.normal(0, 250, (clustered, 2)),
            rng.uniform((0, 0), CITY_M, size=(n_demand - clustered, 2)),
        ]
    )
    cameras = np.vstack(
        [
            centres[rng.integers(0, 400, n_cameras // 2)] + rng.normal(0, 400, (n_cameras // 2, 2)),
            rng.uniform((0, 0), CITY_M, size=(n_cameras - n_cameras // 2, 2)),
        ]
    )
    candidates = demand[rng.choice(n_demand, n_candidates, replace=n_candidates > n_demand)] + rng.normal(
        0, 20, (n_candidates, 2)
    )
    return {
        "demand": demand,
        "weight": rng.choice([1.0, 1.0, 1.0, 3.0, 10.0], n_demand),
        "cameras": cameras,
        "candidates": candidates,
    }


def run_case(n_demand: int, n_cameras: int, n_candidates: int, budget: int, time_limit_s: float) -> dict:
    data = city(n_demand, n_cameras, n_candidates)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    covered = covered_by_any(coverage_matrix(data["demand"], data["cameras"], np.full(n_cameras, RADIUS_M)))
    lap("existing_coverage_s")
    matrix = coverage_matrix(data["demand"], data["candidates"], np.full(n_candidates, RADIUS_M))
    lap("candidate_coverage_s")
    reduced = reduce_problem(matrix[~covered], data["weight"][~covered])
    lap("reduce_s")
    limit = Solver().exact_max_cells  # the planner's default: spopt's dense model below it, sparse HiGHS above
    selection = solve_mclp(reduced, np.ones(len(reduced.sites)), float(budget), True, time_limit_s, 1e-4, limit)
    lap("mclp_s")
    cover = solve_lscp(reduced, time_limit_s, limit)
    lap("lscp_s")
    hotspot_grid(data["demand"], data["weight"], Hotspots(cell_m=200, max_cells=40_000, permutations=99))
    lap("hotspots_s")
    return {
        "demand": n_demand,
        "cameras": n_cameras,
        "candidates": n_candidates,
        "budget": budget,
        "nonzeros": int(matrix.nnz),
        "patterns": int(reduced.patterns.shape[0]),
        "useful_candidates": len(reduced.sites),
        "method": selection.method,
        "covered_weight": round(selection.covered_weight, 1),
        "upper_bound": round(selection.upper_bound, 1),
        "gap_pct": round(100 * selection.gap, 3),
        "lscp_cameras": len(cover.sites),
        "lscp_lower_bound": cover.lower_bound,
        "lscp_method": cover.method,
        **timings,
        "total_s": round(sum(timings.values()), 2),
    }


@app.command()
def main(
    quick: Annotated[bool, typer.Option(help="the CI-sized sweep only (seconds)")] = False,
    time_limit_s: Annotated[float, typer.Option(help="solver time limit per model")] = 60.0,
) -> None:
    base = (10_000, 1_000, 500) if quick else (100_000, 10_000, 5_000)
    full = (100_000, 10_000, 5_000) if quick else (1_000_000, 100_000, 50_000)
    cases = [base]
    for axis in range(3):
        for factor in (3.16, 10):
            size = list(base)
            size[axis] = round(base[axis] * factor)
            cases.append(tuple(size))
    cases.append(full)
    rows = []
    for demand, cameras, candidates in dict.fromkeys(cases):
        row = run_case(demand, cameras, candidates, budget=max(10, candidates // 100), time_limit_s=time_limit_s)
        print(json.dumps(row), flush=True)
        rows.append(row)
    stem = "planner-quick" if quick else "planner"
    date = now_iso()
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps({"date": date, "rows": rows}, indent=1))
    write_markdown(stem, rows, date)


COLUMNS = [
    "demand",
    "cameras",
    "candidates",
    "budget",
    "nonzeros",
    "patterns",
    "useful_candidates",
    "method",
    "gap_pct",
    "lscp_cameras",
    "lscp_lower_bound",
    "existing_coverage_s",
    "candidate_coverage_s",
    "reduce_s",
    "mclp_s",
    "lscp_s",
    "hotspots_s",
    "total_s",
]


def write_markdown(stem: str, rows: list[dict], date: str) -> None:
    machine = machine_description()
    lines = [
        f"# Camera placement planner: scaling ({stem})",
        "",
        (
            "`python -m bench.planner` (generated 600 km² city, clustered demand, 50 m camera radius, budget = "
            "candidates / 100; one size varied at a time from the base case, then the whole city). Times in "
            "seconds on the planner's core (files are not read). gap_pct: MCLP gap to the best upper bound; "
            "lscp_lower_bound: no cover can use fewer cameras."
        ),
        "",
        (
            f"Machine: {machine.get('cpu_model')}, {machine.get('cores')} cores, shared with other work (load varies); "
            f"date {date}."
        ),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    (RESULTS_DIR / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    app()
