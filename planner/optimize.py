"""Choosing sites: maximal covering (MCLP) and set covering (LSCP) with spopt over PuLP + HiGHS.

Existing cameras are fixed by taking the demand they already see out of the problem (the same optimum as
fixing them as predefined facilities, with a smaller model). Demand points covered by the same set of
candidates are one row with their summed weight; candidates that cover nothing left are dropped. When
the reduced matrix still exceeds `exact_max_cells`, a lazy greedy runs on the whole problem, the exact
same model goes to HiGHS as a sparse matrix with the greedy answer as its start, and the gap is stated
against the tighter of HiGHS's dual bound and a submodularity bound (greedy value + best marginal gains).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pulp
from scipy.sparse import csc_matrix, csr_matrix
from spopt.locate import LSCP, MCLP

from planner.sparse_highs import sparse_lscp, sparse_mclp


@dataclass
class Reduced:
    """Demand rows aggregated by identical coverage pattern, over the sites that cover something."""

    patterns: csc_matrix  # (k x m_useful) bool
    weight: np.ndarray  # (k,)
    sites: np.ndarray  # original column index of each useful site
    uncoverable_weight: float


@dataclass
class Selection:
    sites: list[int]  # original column indices, in greedy rank order
    covered_weight: float
    upper_bound: float
    method: str  # "exact" | "greedy+exact-on-reduced" | ...
    solve_s: float
    solver_gap: float | None = None  # HiGHS's own relative MIP gap on the model it solved
    notes: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float:
        """Relative gap to the best known upper bound for the whole problem (0 = proven optimal)."""
        if self.upper_bound <= 0:
            return 0.0
        return max(0.0, (self.upper_bound - self.covered_weight) / self.upper_bound)


def reduce_problem(matrix: csc_matrix, weight: np.ndarray) -> Reduced:
    rows = csr_matrix(matrix)
    rows.sort_indices()
    counts = np.diff(rows.indptr)
    coverable = counts > 0
    uncoverable = float(weight[~coverable].sum())
    keep = np.flatnonzero(coverable & (weight > 0))
    keys = [rows.indices[rows.indptr[i] : rows.indptr[i + 1]].tobytes() for i in keep]
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object))
    summed = np.bincount(codes, weights=weight[keep], minlength=len(uniques)) if len(keep) else np.empty(0)
    first = np.full(len(uniques), -1, dtype=np.int64)
    first[codes[::-1]] = keep[::-1]
    patterns = rows[first] if len(first) else csr_matrix((0, matrix.shape[1]), dtype=bool)
    useful = np.flatnonzero(np.asarray(patterns.sum(axis=0)).ravel() > 0)
    return Reduced(csc_matrix(patterns[:, useful]), summed, useful, uncoverable)


def _value(patterns: csc_matrix, weight: np.ndarray, chosen: list[int]) -> float:
    if not chosen:
        return 0.0
    hit = np.asarray(patterns[:, chosen].sum(axis=1)).ravel() > 0
    return float(weight[hit].sum())


def greedy(
    patterns: csc_matrix, weight: np.ndarray, cost: np.ndarray, capacity: float, count_budget: bool
) -> list[int]:
    """Lazy greedy: best gain (count budget) or best gain per cost (cost budget) first."""
    covered = np.zeros(patterns.shape[0], dtype=bool)
    indptr, indices = patterns.indptr, patterns.indices

    def gain(j: int) -> float:
        rows = indices[indptr[j] : indptr[j + 1]]
        return float(weight[rows[~covered[rows]]].sum())

    score = (lambda j, g: g) if count_budget else (lambda j, g: g / max(cost[j], 1e-12))
    heap = [(-score(j, gain(j)), j) for j in range(patterns.shape[1])]
    heapq.heapify(heap)
    chosen: list[int] = []
    spent = 0.0
    while heap:
        _, j = heapq.heappop(heap)
        if spent + cost[j] > capacity + 1e-9:
            continue
        current = score(j, gain(j))
        if heap and current < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-current, j))
            continue
        if current <= 0:
            break
        chosen.append(j)
        spent += cost[j]
        rows = indices[indptr[j] : indptr[j + 1]]
        covered[rows] = True
    return chosen


def upper_bound(
    patterns: csc_matrix, weight: np.ndarray, cost: np.ndarray, capacity: float, prefixes: list[list[int]]
) -> float:
    """min over sets S of f(S) + the fractional-knapsack best of marginal gains w.r.t. S (valid because
    coverage is submodular); also never above all coverable weight."""
    best = float(weight.sum())
    for chosen in prefixes:
        hit = np.asarray(patterns[:, chosen].sum(axis=1)).ravel() > 0 if chosen else np.zeros(len(weight), bool)
        gains = patterns.T @ (weight * ~hit)
        order = np.argsort(-(gains / np.maximum(cost, 1e-12)))
        bound, room = float(weight[hit].sum()), capacity
        for j in order:
            if gains[j] <= 0 or room <= 0:
                break
            take = min(1.0, room / cost[j]) if cost[j] > 0 else 1.0
            bound += take * gains[j]
            room -= take * cost[j]
        best = min(best, bound)
    return best


def _solver(time_limit_s: float, gap: float) -> pulp.LpSolver:
    return pulp.HiGHS(msg=False, timeLimit=time_limit_s, gapRel=gap, threads=1)


def _solved_columns(problem: pulp.LpProblem, fac_vars: list[pulp.LpVariable]) -> list[int] | None:
    if problem.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None
    return [j for j, var in enumerate(fac_vars) if (var.value() or 0) > 0.5]


def _highs_gap(problem: pulp.LpProblem) -> float | None:
    try:
        info = problem.solverModel.getInfo()
        return float(info.mip_gap) if np.isfinite(info.mip_gap) else None
    except AttributeError:
        return None


def exact_mclp(
    patterns: csc_matrix,
    weight: np.ndarray,
    cost: np.ndarray,
    capacity: float,
    count_budget: bool,
    time_limit_s: float,
    gap: float,
) -> tuple[list[int] | None, float | None]:
    """spopt's MCLP on the aggregated matrix; a cost budget replaces its 'exactly p sites' row by a knapsack."""
    dense_cost = np.where(patterns.toarray(), 0.0, 1.0)
    m = patterns.shape[1]
    p = int(min(capacity, m)) if count_budget else m
    model = MCLP.from_cost_matrix(dense_cost, weight, service_radius=0.5, p_facilities=p)
    if count_budget and capacity < m:
        pass  # spopt's own "sum x == p" row is the budget
    else:
        # Here spopt's row reads "sum x == m" (p = m): loosened to "sum x <= m", always true, which drops
        # it without PuLP's deprecated dict view of the constraints (gone in PuLP 4).
        for constraint in model.problem.constraints():
            if constraint.sense == pulp.LpConstraintEQ and len(constraint) == m:
                constraint.sense = pulp.LpConstraintLE
        if not count_budget:
            model.problem += (
                pulp.lpSum(float(c) * x for c, x in zip(cost, model.fac_vars, strict=False)) <= capacity,
                "budget",
            )
        else:
            model.problem += pulp.lpSum(model.fac_vars) <= capacity, "budget"
    model.problem.solve(_solver(time_limit_s, gap))
    return _solved_columns(model.problem, model.fac_vars), _highs_gap(model.problem)


def _rank(patterns: csc_matrix, weight: np.ndarray, chosen: list[int]) -> list[int]:
    """Order a chosen set by marginal gain (greedy within the set) so row 1 is the most valuable site."""
    ones = np.ones(patterns.shape[1])
    sub = greedy(patterns[:, chosen], weight, ones, float(len(chosen)), count_budget=True)
    ranked = [chosen[j] for j in sub]
    return ranked + [j for j in chosen if j not in ranked]


def solve_mclp(
    reduced: Reduced,
    cost: np.ndarray,
    capacity: float,
    count_budget: bool,
    time_limit_s: float,
    gap: float,
    exact_max_cells: int,
) -> Selection:
    """cost: per useful site (aligned with reduced.sites). Returns original column indices."""
    started = time.perf_counter()
    P, W = reduced.patterns, reduced.weight
    k, m = P.shape
    notes: list[str] = []
    if m == 0:
        return Selection([], 0.0, 0.0, "nothing to cover", 0.0, notes=["no candidate covers any uncovered demand"])
    if k * m <= exact_max_cells:
        chosen, solver_gap = exact_mclp(P, W, cost, capacity, count_budget, time_limit_s, gap)
        if chosen is not None:
            value = _value(P, W, chosen)
            bound = value / (1 - solver_gap) if solver_gap else value
            ranked = _rank(P, W, chosen)
            return Selection(
                [int(reduced.sites[j]) for j in ranked],
                value,
                bound,
                "exact (spopt MCLP, HiGHS)",
                time.perf_counter() - started,
                solver_gap,
                notes,
            )
        notes.append("the exact model found no solution within the time limit: greedy result")
    picks = greedy(P, W, cost, capacity, count_budget)
    value = _value(P, W, picks)
    checkpoints = sorted({0, len(picks) // 4, len(picks) // 2, 3 * len(picks) // 4, len(picks)})
    bound = upper_bound(P, W, cost, capacity, [picks[:c] for c in checkpoints])
    method, solver_gap, best = "greedy", None, picks
    # The same model, sparse, straight to HiGHS with the greedy answer as its starting point.
    remaining = time_limit_s - (time.perf_counter() - started)
    if remaining > 1:
        solved = sparse_mclp(P, W, cost, capacity, picks, remaining, gap)
        if solved.columns is not None:
            bound = min(bound, solved.bound)
            solver_gap = solved.mip_gap
            if _value(P, W, solved.columns) >= value:
                best, value = solved.columns, _value(P, W, solved.columns)
                method = "greedy warm start + HiGHS on the sparse reduced model"
            if solved.status != "Optimal":
                method += f" ({solved.status.lower()})"
    if method == "greedy":
        notes.append("HiGHS found nothing better than the greedy start within the time limit: greedy result")
    ranked = _rank(P, W, best)
    return Selection(
        [int(reduced.sites[j]) for j in ranked],
        value,
        max(bound, value),
        method,
        time.perf_counter() - started,
        solver_gap,
        notes,
    )


@dataclass
class SetCover:
    sites: list[int]
    lower_bound: int
    method: str
    solve_s: float


def solve_lscp(reduced: Reduced, time_limit_s: float, exact_max_cells: int) -> SetCover:
    """Fewest new cameras that see every coverable demand point (spopt LSCP; greedy beyond the size limit,
    with a lower bound from demand rows that no single camera can share)."""
    started = time.perf_counter()
    P = reduced.patterns
    k, m = P.shape
    if m == 0:
        return SetCover([], 0, "nothing to cover", 0.0)
    if k * m <= exact_max_cells:
        model = LSCP.from_cost_matrix(np.where(P.toarray(), 0.0, 1.0), service_radius=0.5)
        model.problem.solve(_solver(time_limit_s, 0.0))
        chosen = _solved_columns(model.problem, model.fac_vars)
        if chosen is not None and model.problem.status == pulp.LpStatusOptimal:
            return SetCover(
                [int(reduced.sites[j]) for j in chosen],
                len(chosen),
                "exact (spopt LSCP, HiGHS)",
                time.perf_counter() - started,
            )
    ones = np.ones(k)
    picks = greedy(P, ones, np.ones(m), float(m), count_budget=True)
    lower = _packing_bound(P)
    method = "greedy (lower bound: disjoint rows)"
    remaining = time_limit_s - (time.perf_counter() - started)
    if remaining > 1:
        solved = sparse_lscp(P, picks, remaining)
        if solved.columns is not None:
            lower = max(lower, int(np.ceil(solved.bound - 1e-6)))
            if len(solved.columns) <= len(picks):
                picks, method = solved.columns, "greedy warm start + HiGHS on the sparse reduced model"
            if solved.status != "Optimal":
                method += f" ({solved.status.lower()})"
    return SetCover([int(reduced.sites[j]) for j in picks], lower, method, time.perf_counter() - started)


def _packing_bound(P: csc_matrix) -> int:
    """Rows chosen so that no two share a candidate: each needs its own camera, so their count bounds LSCP."""
    rows = csr_matrix(P)
    order = np.argsort(np.diff(rows.indptr))  # rows with few candidates first: more of them fit
    used = np.zeros(P.shape[1], dtype=bool)
    count = 0
    for i in order:
        cols = rows.indices[rows.indptr[i] : rows.indptr[i + 1]]
        if not used[cols].any():
            used[cols] = True
            count += 1
    return count
