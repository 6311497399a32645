"""Writing a plan: ranked sites (CSV + GeoJSON), the set-cover sites, before/after coverage per layer,
a map PNG, an offline HTML map (inline SVG, no tiles or CDN) and a short Markdown report."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from planner.geometry import to_wgs84
from planner.plan import PlanResult

MAX_DRAWN_POINTS = 150_000  # drawing more adds nothing visible on a city map and costs minutes


def write_outputs(result: PlanResult, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "sites.csv": _write_sites_csv(result, out / "sites.csv"),
        "sites.geojson": _write_sites_geojson(result, out / "sites.geojson"),
        "coverage.csv": _write_coverage(result, out / "coverage.csv"),
    }
    if result.set_cover is not None:
        written["lscp_sites.csv"] = _write_lscp(result, out / "lscp_sites.csv")
    written["map.png"] = _write_png(result, out / "map.png")
    written["map.html"] = _write_html(result, out / "map.html")
    written["report.md"] = _write_report(result, out / "report.md", written)
    return written


def _write_sites_csv(result: PlanResult, path: Path) -> Path:
    result.sites.to_csv(path, index=False, encoding="utf-8-sig")  # the BOM makes Excel read Korean names right
    return path


def _write_sites_geojson(result: PlanResult, path: Path) -> Path:
    features = []
    for record in result.sites.to_dict(orient="records"):
        properties = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items() if k not in ("lat", "lon")}
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [record["lon"], record["lat"]]},
                "properties": properties,
            }
        )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, indent=1))
    return path


def coverage_table(result: PlanResult) -> pd.DataFrame:
    rows = []
    for f in result.layers:

        def pct(v: float, total: float = f.total) -> float:
            return round(100 * v / total, 2) if total else 0.0

        rows.append(
            {
                "layer": f.name,
                "kind": f.kind,
                "points": f.points,
                "total_weight": round(f.total, 4),
                "covered_before": round(f.before, 4),
                "covered_after": round(f.after, 4),
                "before_pct": pct(f.before),
                "after_pct": pct(f.after),
                "reachable_pct": pct(f.coverable),
            }
        )
    return pd.DataFrame(rows)


def _write_coverage(result: PlanResult, path: Path) -> Path:
    coverage_table(result).to_csv(path, index=False, encoding="utf-8-sig")
    return path


def _write_lscp(result: PlanResult, path: Path) -> Path:
    assert result.set_cover is not None
    sites = result.set_cover.sites
    lon, lat = to_wgs84(result.crs, result.candidates.xy[sites]) if sites else (np.empty(0), np.empty(0))
    pd.DataFrame(
        {
            "site_id": [f"site-{j}" for j in sites],
            "lat": np.round(lat, 7),
            "lon": np.round(lon, 7),
            "source": [result.candidates.source[j] for j in sites],
        }
    ).to_csv(path, index=False)
    return path


def _subsample(n: int) -> np.ndarray:
    if n <= MAX_DRAWN_POINTS:
        return np.arange(n)
    return np.random.default_rng(0).choice(n, MAX_DRAWN_POINTS, replace=False)


def _write_png(result: PlanResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle, Rectangle

    config = result.config
    types = config.coverage.camera_types
    fig, ax = plt.subplots(figsize=(11, 10), dpi=110)
    grid = result.hotspots
    if grid is not None:
        rows, cols = grid.shape
        x0, y0 = grid.origin
        extent = (x0, x0 + cols * grid.cell_m, y0, y0 + rows * grid.cell_m)
        ax.imshow(
            np.ma.masked_less_equal(grid.density, grid.density.max() * 0.1),
            origin="lower",
            extent=extent,
            cmap="YlOrRd",
            alpha=0.55,
            zorder=1,
        )
        hot = [Rectangle((x, y), grid.cell_m, grid.cell_m) for x, y in grid.cell_centres(grid.hot) - grid.cell_m / 2]
        ax.add_collection(PatchCollection(hot, facecolor="none", edgecolor="#b30000", linewidth=1.0, zorder=2))
    if result.streets:
        import shapely
        from matplotlib.collections import LineCollection

        lines = [shapely.get_coordinates(part) for g in result.streets[:200_000] for part in getattr(g, "geoms", [g])]
        ax.add_collection(LineCollection(lines, colors="#999999", linewidths=0.6, zorder=1.5))
    shown = _subsample(len(result.demand.xy))
    xy, covered = result.demand.xy[shown], result.covered_after[shown]
    ax.scatter(xy[~covered, 0], xy[~covered, 1], s=6, c="#d62728", label="demand not covered (blind spot)", zorder=3)
    ax.scatter(xy[covered, 0], xy[covered, 1], s=6, c="#555555", label="demand covered", zorder=3)
    if len(result.camera_xy):
        circles = [
            Circle(p, types[t].radius_m) for p, t in zip(result.camera_xy, result.cameras.camera_type, strict=False)
        ]
        ax.add_collection(PatchCollection(circles, facecolor="#1f77b4", alpha=0.15, edgecolor="#1f77b4", zorder=2))
        ax.scatter(
            result.camera_xy[:, 0],
            result.camera_xy[:, 1],
            marker="^",
            s=50,
            c="#1f77b4",
            edgecolor="white",
            label=f"existing cameras ({len(result.camera_xy)})",
            zorder=4,
        )
    chosen = result.selection.sites
    if chosen:
        new_radius = types[config.coverage.new_camera_type].radius_m
        sites = result.candidates.xy[chosen]
        ax.add_collection(
            PatchCollection(
                [Circle(p, new_radius) for p in sites], facecolor="#2ca02c", alpha=0.18, edgecolor="#2ca02c", zorder=2
            )
        )
        ax.scatter(
            sites[:, 0],
            sites[:, 1],
            marker="*",
            s=180,
            c="#2ca02c",
            edgecolor="black",
            label=f"proposed sites ({len(chosen)})",
            zorder=5,
        )
        for rank, (x, y) in enumerate(sites[:60], start=1):
            ax.annotate(
                str(rank), (x, y), xytext=(5, 5), textcoords="offset points", fontsize=8, weight="bold", zorder=6
            )
    ax.plot([], [], color="#b30000", label=f"Gi* hot spot cell (p < {config.hotspots.significance:.2g})")
    before = sum(f.before for f in result.layers) / max(sum(f.total for f in result.layers), 1e-12)
    after = sum(f.after for f in result.layers) / max(sum(f.total for f in result.layers), 1e-12)
    ax.set_title(
        f"{config.name}\nweighted coverage {100 * before:.1f}% -> {100 * after:.1f}%  ({result.crs.name}, metres)",
        fontsize=11,
    )
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _write_html(result: PlanResult, path: Path) -> Path:
    """A self-contained SVG map: layer toggles, wheel zoom, drag pan, tooltips; no network needed."""
    demand = result.demand.xy
    lo, hi = demand.min(axis=0), demand.max(axis=0)
    if len(result.camera_xy):
        lo, hi = np.minimum(lo, result.camera_xy.min(axis=0)), np.maximum(hi, result.camera_xy.max(axis=0))
    pad = max(hi[0] - lo[0], hi[1] - lo[1], 1.0) * 0.05
    x0, y1 = lo[0] - pad, hi[1] + pad
    width, height = hi[0] - lo[0] + 2 * pad, hi[1] - lo[1] + 2 * pad
    dot = max(width, height) / 500

    def sx(x: float) -> str:
        return f"{x - x0:.1f}"

    def sy(y: float) -> str:
        return f"{y1 - y:.1f}"

    groups: dict[str, list[str]] = {"streets": [], "hot": [], "demand": [], "cameras": [], "sites": []}
    for street in result.streets[:20_000]:
        for part in getattr(street, "geoms", [street]):
            coords = " ".join(f"{sx(x)},{sy(y)}" for x, y in part.coords)
            groups["streets"].append(f'<polyline points="{coords}"/>')
    grid = result.hotspots
    if grid is not None:
        for (cx, cy), z in zip(grid.cell_centres(grid.hot), grid.z[grid.hot], strict=False):
            half = grid.cell_m / 2
            groups["hot"].append(
                f'<rect x="{sx(cx - half)}" y="{sy(cy + half)}" width="{grid.cell_m:.1f}" '
                f'height="{grid.cell_m:.1f}"><title>Gi* z = {z:.2f}</title></rect>'
            )
    shown = _subsample(len(demand))[:30_000]
    names = result.demand.names
    for i in shown:
        colour = "#555" if result.covered_after[i] else "#d62728"
        groups["demand"].append(
            f'<circle cx="{sx(demand[i, 0])}" cy="{sy(demand[i, 1])}" r="{dot:.1f}" '
            f'fill="{colour}"><title>{html.escape(names[result.demand.layer[i]])} '
            f"weight {result.demand.weight[i]:.3g}</title></circle>"
        )
    types = result.config.coverage.camera_types
    for (x, y), camera_id, kind in list(
        zip(result.camera_xy, result.cameras.ids, result.cameras.camera_type, strict=False)
    )[:20_000]:
        groups["cameras"].append(
            f'<circle cx="{sx(x)}" cy="{sy(y)}" r="{types[kind].radius_m:.1f}" class="cam">'
            f"<title>{html.escape(camera_id)} ({html.escape(kind)})</title></circle>"
        )
    radius = types[result.config.coverage.new_camera_type].radius_m
    for record, j in zip(result.sites.to_dict(orient="records"), result.selection.sites, strict=False):
        x, y = result.candidates.xy[j]
        tip = html.escape(
            f"#{record['rank']} {record['site_id']} ({record['lat']}, {record['lon']}): "
            f"newly covers weight {record['new_weight']}"
        )
        groups["sites"].append(
            f'<g><title>{tip}</title><circle cx="{sx(x)}" cy="{sy(y)}" r="{radius:.1f}" class="site"/>'
            f'<text x="{sx(x)}" y="{sy(y)}" font-size="{dot * 6:.1f}">{record["rank"]}</text></g>'
        )
    labels = {
        "streets": "streets",
        "hot": "Gi* hot spots",
        "demand": "demand (red = not covered)",
        "cameras": "existing cameras",
        "sites": "proposed sites",
    }
    toggles = "".join(
        f'<label><input type="checkbox" checked onchange="toggle(\'{k}\', this.checked)"> {v}</label> '
        for k, v in labels.items()
    )
    layers = "".join(f'<g id="{k}">{"".join(v)}</g>' for k, v in groups.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(result.config.name)}</title>
<style>body{{font:14px sans-serif;margin:0}}#bar{{padding:6px;background:#eee}}svg{{display:block;width:100%;height:calc(100vh - 60px);background:#fafafa}}body{{overflow:hidden}}
#streets polyline{{fill:none;stroke:#999;stroke-width:{dot / 2:.2f}}}
#hot rect{{fill:#fdae6b;fill-opacity:.45;stroke:#b30000;stroke-width:{dot / 3:.2f}}}
.cam{{fill:#1f77b4;fill-opacity:.15;stroke:#1f77b4;stroke-width:{dot / 2:.2f}}}
.site{{fill:#2ca02c;fill-opacity:.25;stroke:#2ca02c;stroke-width:{dot:.2f}}}text{{font-weight:bold}}</style></head>
<body><div id="bar"><b>{html.escape(result.config.name)}</b> — {toggles} (wheel: zoom, drag: pan; metres, {html.escape(result.crs.name)})</div>
<svg id="map" viewBox="0 0 {width:.1f} {height:.1f}" xmlns="http://www.w3.org/2000/svg">{layers}</svg>
<script>
function toggle(id, on){{document.getElementById(id).style.display = on ? '' : 'none';}}
const svg=document.getElementById('map');let vb=svg.viewBox.baseVal,drag=null;
svg.addEventListener('wheel',e=>{{e.preventDefault();const k=e.deltaY>0?1.2:1/1.2,r=svg.getBoundingClientRect();
const px=vb.x+(e.clientX-r.left)/r.width*vb.width,py=vb.y+(e.clientY-r.top)/r.height*vb.height;
vb.x=px-(px-vb.x)*k;vb.y=py-(py-vb.y)*k;vb.width*=k;vb.height*=k;}});
svg.addEventListener('mousedown',e=>{{drag=[e.clientX,e.clientY];}});window.addEventListener('mouseup',()=>drag=null);
svg.addEventListener('mousemove',e=>{{if(!drag)return;const r=svg.getBoundingClientRect();
vb.x-=(e.clientX-drag[0])/r.width*vb.width;vb.y-=(e.clientY-drag[1])/r.height*vb.height;drag=[e.clientX,e.clientY];}});
</script></body></html>"""
    path.write_text(page, encoding="utf-8")
    return path


def _markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def _write_report(result: PlanResult, path: Path, written: dict[str, Path]) -> Path:
    config, sel = result.config, result.selection
    budget = (
        f"{config.budget.cameras} new cameras"
        if config.budget.cameras is not None
        else f"total cost {config.budget.total_cost:g}"
    )
    lines = [
        f"# {config.name}",
        "",
        (
            f"Projection for distances: {result.crs.name} (EPSG:{result.crs.to_epsg()}). "
            f"Demand points: {len(result.demand.xy):,}; existing cameras: {len(result.cameras):,}; "
            f"candidate sites: {len(result.candidates):,}; budget: {budget}."
        ),
        "",
        "## Coverage before and after, per layer",
        "",
        _markdown_table(coverage_table(result)),
        (
            "`reachable_pct`: what existing cameras plus every candidate could see; the rest is out of reach "
            "of all candidate sites."
        ),
        "",
        "## Proposed sites (ranked by the demand each newly covers)",
        "",
        _markdown_table(result.sites.head(50)),
        "",
        "## Optimisation",
        "",
        f"- Maximal covering (MCLP), existing cameras fixed: method **{sel.method}**, covered weight "
        f"{sel.covered_weight:,.4g} of an upper bound {sel.upper_bound:,.4g}: **gap {100 * sel.gap:.3g}%**"
        + (f" (HiGHS's own MIP gap {100 * sel.solver_gap:.3g}%)" if sel.solver_gap is not None else "")
        + f"; solve time {sel.solve_s:.2f} s.",
    ]
    if result.set_cover is not None:
        sc = result.set_cover
        lines.append(
            f"- Set covering (LSCP): **{len(sc.sites)} new cameras** would see every demand point within "
            f"reach of a candidate ({sc.method}; at least {sc.lower_bound} are needed); {sc.solve_s:.2f} s. "
            "Sites: `lscp_sites.csv`."
        )
    if result.hotspots is not None:
        grid = result.hotspots
        d = result.demand
        hot_total = grid.weight_in_hot_cells(d.xy, d.weight)
        blind_before = grid.weight_in_hot_cells(d.xy[~result.covered_before], d.weight[~result.covered_before])
        blind_after = grid.weight_in_hot_cells(d.xy[~result.covered_after], d.weight[~result.covered_after])
        lines.append(
            f"- Hot spots (Getis-Ord Gi*, {grid.cell_m:.0f} m cells, queen contiguity, "
            f"{config.hotspots.permutations} permutations): {int(grid.hot.sum())} significant cells "
            f"(p < {grid.significance:g}) holding demand weight {hot_total:,.4g}; of it uncovered "
            f"(blind spots in hot spots) {blind_before:,.4g} before, {blind_after:,.4g} after."
        )
    lines += ["", "## Timings (s)", "", ", ".join(f"{k[:-2]} {v}" for k, v in result.timings_s.items())]
    if result.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in result.warnings]
    lines += ["", "## Files", ""] + [f"- `{name}`" for name in written] + ["- `report.md`", "", "![map](map.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
