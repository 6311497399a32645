"""Hot spots of weighted demand: a binned kernel density (for the map) and Getis-Ord Gi* (esda) on a
square grid, with permutation p-values, so "hot" means statistically significant clustering."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from planner.config import Hotspots


@dataclass
class HotspotGrid:
    origin: tuple[float, float]  # metric x, y of the grid's lower-left corner
    cell_m: float
    shape: tuple[int, int]  # (rows = y, cols = x)
    weight: np.ndarray  # (rows, cols) summed demand weight per cell
    density: np.ndarray  # (rows, cols) kernel density, weight per km²
    z: np.ndarray  # (rows, cols) Gi* z-score (NaN where not computed)
    p: np.ndarray  # (rows, cols) pseudo p-value from permutations
    significance: float

    @property
    def hot(self) -> np.ndarray:
        return (self.z > 0) & (self.p < self.significance)

    def weight_in_hot_cells(self, xy: np.ndarray, weight: np.ndarray) -> float:
        """Summed weight of the given points that fall in significant hot-spot cells."""
        cols = np.floor((xy[:, 0] - self.origin[0]) / self.cell_m).astype(int)
        rows = np.floor((xy[:, 1] - self.origin[1]) / self.cell_m).astype(int)
        inside = (rows >= 0) & (rows < self.shape[0]) & (cols >= 0) & (cols < self.shape[1])
        hot = np.zeros(len(xy), dtype=bool)
        hot[inside] = self.hot[rows[inside], cols[inside]]
        return float(weight[hot].sum())

    def cell_centres(self, mask: np.ndarray) -> np.ndarray:
        rows, cols = np.nonzero(mask)
        x0, y0 = self.origin
        return np.column_stack([x0 + (cols + 0.5) * self.cell_m, y0 + (rows + 0.5) * self.cell_m])


def hotspot_grid(xy: np.ndarray, weight: np.ndarray, settings: Hotspots, seed: int = 0) -> HotspotGrid:
    x0, y0 = xy.min(axis=0) - settings.cell_m
    x1, y1 = xy.max(axis=0) + settings.cell_m
    cell = settings.cell_m
    # Keep Gi* tractable on a city: coarsen the grid until it fits max_cells.
    while np.ceil((x1 - x0) / cell) * np.ceil((y1 - y0) / cell) > settings.max_cells:
        cell *= 1.5
    cols, rows = int(np.ceil((x1 - x0) / cell)), int(np.ceil((y1 - y0) / cell))
    grid, _, _ = np.histogram2d(
        xy[:, 1], xy[:, 0], bins=[rows, cols], range=[[y0, y0 + rows * cell], [x0, x0 + cols * cell]], weights=weight
    )
    bandwidth = settings.kde_bandwidth_m or 2 * cell
    density = gaussian_filter(grid, sigma=bandwidth / cell, mode="constant") / (cell / 1000.0) ** 2
    z, p = _getis_ord(grid, cell, settings.permutations, seed)
    return HotspotGrid((float(x0), float(y0)), cell, (rows, cols), grid, density, z, p, settings.significance)


def _getis_ord(grid: np.ndarray, cell: float, permutations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gi* over the cells with queen contiguity (each cell and its 8 neighbours), via esda.G_Local."""
    from esda.getisord import G_Local
    from libpysal.weights import lat2W

    rows, cols = grid.shape
    z = np.full(grid.shape, np.nan)
    p = np.ones(grid.shape)
    if rows * cols < 4 or grid.sum() <= 0:
        return z, p
    weights = lat2W(rows, cols, rook=False)  # row-major ids: id = r * cols + c, as grid.ravel()
    values = grid.ravel().astype(float)
    result = G_Local(values, weights, transform="B", permutations=permutations, star=True, seed=seed)
    z = np.asarray(result.Zs, dtype=float).reshape(grid.shape)
    if permutations:
        p = np.asarray(result.p_sim, dtype=float).reshape(grid.shape)
    else:
        p = np.asarray(result.p_norm, dtype=float).reshape(grid.shape)
    return z, p
