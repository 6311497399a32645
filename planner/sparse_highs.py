"""MCLP and LSCP as sparse models handed straight to HiGHS, for problems whose dense matrix spopt
cannot hold (spopt builds a dense demand x site cost matrix). Same formulations as spopt's; the
greedy answer is passed as a starting solution, so the result is never worse than it."""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
from scipy.sparse import csc_matrix, hstack, identity, vstack
from scipy.sparse import csr_matrix as _csr


@dataclass
class SparseSolution:
    columns: list[int] | None  # chosen sites, None when no solution was found
    objective: float
    bound: float  # HiGHS's dual bound: no solution can beat it
    mip_gap: float | None
    status: str = ""  # HiGHS's model status, e.g. "Optimal" or "Time limit reached"


def _solve(
    cost: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    integer: np.ndarray,
    matrix: csc_matrix,
    row_lower: np.ndarray,
    row_upper: np.ndarray,
    maximise: bool,
    time_limit_s: float,
    gap: float,
    start: np.ndarray | None,
) -> tuple[highspy.Highs, np.ndarray | None]:
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cost), matrix.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lower, upper
    lp.row_lower_, lp.row_upper_ = row_lower, row_upper
    lp.sense_ = highspy.ObjSense.kMaximize if maximise else highspy.ObjSense.kMinimize
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = matrix.indptr, matrix.indices, matrix.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = len(cost), matrix.shape[0]
    lp.integrality_ = [highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous for flag in integer]
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", float(gap))
    h.setOptionValue("threads", 1)
    h.passModel(lp)
    if start is not None:
        solution = highspy.HighsSolution()
        solution.col_value = list(start)
        solution.value_valid = True
        h.setSolution(solution)
    h.run()
    info = h.getInfo()
    if info.primal_solution_status != 2:  # kSolutionStatusFeasible
        return h, None
    values = np.asarray(h.getSolution().col_value)
    if start is not None and abs(float(cost @ values) - info.objective_function_value) > 1e-6 * max(
        1.0, abs(info.objective_function_value)
    ):
        # Seen with HiGHS 1.16 when presolve finishes the MIP: it reports the better objective but hands
        # back the starting solution. Solve again without the start to get the columns that match it.
        return _solve(cost, lower, upper, integer, matrix, row_lower, row_upper, maximise, time_limit_s, gap, None)
    return h, values


def sparse_mclp(
    patterns: csc_matrix,
    weight: np.ndarray,
    cost: np.ndarray,
    capacity: float,
    start_sites: list[int],
    time_limit_s: float,
    gap: float,
) -> SparseSolution:
    """max sum w_i y_i  s.t.  y_i <= sum_{j sees i} x_j,  sum c_j x_j <= budget,  x binary, 0 <= y <= 1."""
    k, m = patterns.shape
    coverage = csc_matrix(patterns, dtype=float)
    rows = vstack(
        [hstack([-coverage, identity(k, format="csc")]), hstack([_csr(cost.reshape(1, -1)), _csr((1, k))])]
    ).tocsc()
    start = np.zeros(m + k)
    start[start_sites] = 1.0
    start[m:] = (np.asarray(coverage[:, start_sites].sum(axis=1)).ravel() > 0) if start_sites else 0.0
    h, values = _solve(
        np.concatenate([np.zeros(m), weight]),
        np.zeros(m + k),
        np.ones(m + k),
        np.concatenate([np.ones(m, bool), np.zeros(k, bool)]),
        rows,
        np.full(k + 1, -highspy.kHighsInf),
        np.concatenate([np.zeros(k), [capacity]]),
        True,
        time_limit_s,
        gap,
        start,
    )
    info = h.getInfo()
    if values is None:
        return SparseSolution(None, 0.0, float("inf"), None)
    chosen = [int(j) for j in np.flatnonzero(values[:m] > 0.5)]
    return SparseSolution(
        chosen,
        float(info.objective_function_value),
        float(info.mip_dual_bound),
        float(info.mip_gap),
        h.modelStatusToString(h.getModelStatus()),
    )


def sparse_lscp(patterns: csc_matrix, start_sites: list[int], time_limit_s: float) -> SparseSolution:
    """min sum x_j  s.t.  sum_{j sees i} x_j >= 1 for every demand row,  x binary."""
    k, m = patterns.shape
    start = np.zeros(m)
    start[start_sites] = 1.0
    h, values = _solve(
        np.ones(m),
        np.zeros(m),
        np.ones(m),
        np.ones(m, bool),
        csc_matrix(patterns, dtype=float),
        np.ones(k),
        np.full(k, highspy.kHighsInf),
        False,
        time_limit_s,
        0.0,
        start,
    )
    info = h.getInfo()
    if values is None:
        return SparseSolution(None, 0.0, 0.0, None)
    return SparseSolution(
        [int(j) for j in np.flatnonzero(values > 0.5)],
        float(info.objective_function_value),
        float(info.mip_dual_bound),
        float(info.mip_gap),
        h.modelStatusToString(h.getModelStatus()),
    )
