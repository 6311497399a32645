"""Planner inputs: the Korean national-standard CCTV CSV (CP949 and UTF-8, Korean headers), our inventory,
clear errors on bad input, the projection choice, sector/obstacle coverage, and `cctv plan` itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from planner.cameras import KOREAN_STANDARD_FIELDS, read_all_existing
from planner.config import PlanConfigError, parse_config
from planner.coverage import coverage_matrix
from planner.geometry import metric_crs, to_wgs84
from planner.layers import ReadReport
from planner.plan import run_plan
from tests.planner_helpers import GEODANET, real_points

REPO = Path(__file__).resolve().parents[1]
SEOUL_ROWS = [  # 서울 중구 around City Hall; one row lacks coordinates, as real open-data files do
    {
        "관리기관명": "서울특별시 중구청",
        "소재지도로명주소": "서울특별시 중구 세종대로 110",
        "설치목적구분": "생활방범",
        "카메라대수": "2",
        "WGS84위도": "37.566535",
        "WGS84경도": "126.977969",
    },
    {
        "관리기관명": "서울특별시 중구청",
        "소재지도로명주소": "서울특별시 중구 을지로 12",
        "설치목적구분": "어린이보호",
        "카메라대수": "1",
        "WGS84위도": "37.566000",
        "WGS84경도": "126.979500",
    },
    {
        "관리기관명": "서울특별시 중구청",
        "소재지도로명주소": "서울특별시 중구 무교로 1",
        "설치목적구분": "생활방범",
        "카메라대수": "1",
        "WGS84위도": "",
        "WGS84경도": "",
    },
]


def _korean_csv(path: Path, encoding: str) -> Path:
    frame = pd.DataFrame([{field: row.get(field, "") for field in KOREAN_STANDARD_FIELDS} for row in SEOUL_ROWS])
    path.write_bytes(frame.to_csv(index=False).encode(encoding))
    return path


def _seoul_config(tmp_path: Path, cameras: Path, **overrides: object) -> dict:
    demand = tmp_path / "complaints.csv"
    demand.write_text("위도,경도,민원\n37.5664,126.9781,3\n37.5661,126.9794,1\n37.5690,126.9850,2\n", encoding="utf-8")
    return {
        "existing_cameras": [{"path": str(cameras)}],
        "demand": [{"name": "requests", "kind": "request", "path": str(demand), "weight_column": "민원"}],
        "candidates": {"h3": {"resolution": 11}},
        "coverage": {"camera_types": {"fixed": {"radius_m": 60}, "어린이보호": {"radius_m": 40}}},
        "budget": {"cameras": 1},
        "hotspots": {"enabled": False},
        **overrides,
    }


@pytest.mark.parametrize("encoding", ["cp949", "utf-8-sig"])
def test_korean_standard_csv_loads(tmp_path: Path, encoding: str) -> None:
    path = _korean_csv(tmp_path / "cctv.csv", encoding)
    if encoding == "cp949":
        with pytest.raises(UnicodeDecodeError):
            path.read_bytes().decode("utf-8")  # really CP949, not UTF-8 in disguise
    config = parse_config(_seoul_config(tmp_path, path), tmp_path)
    report = ReadReport()
    cameras = read_all_existing(config, report)
    assert len(cameras) == 2
    assert cameras.lat.tolist() == [37.566535, 37.566]
    assert cameras.lon.tolist() == [126.977969, 126.9795]
    assert cameras.camera_type == ["fixed", "어린이보호"]  # 설치목적구분 naming a configured type uses it
    assert any("1 of 3 rows have no usable coordinates" in w for w in report.warnings)
    result = run_plan(config)
    assert result.crs.to_epsg() == 5186  # inside Korea: the national TM
    # The first two complaints are within 60 m / 40 m of the cameras, the third (~700 m away) is not.
    assert result.covered_before.tolist() == [True, True, False]
    assert result.sites["new_requests"].tolist() == [2.0]


def test_inventory_yaml_cameras_load(tmp_path: Path) -> None:
    config = parse_config(_seoul_config(tmp_path, REPO / "samples/cameras.yaml"), tmp_path)
    cameras = read_all_existing(config, ReadReport())
    assert "campus-file" in cameras.ids
    assert len(cameras) >= 1 and np.all(np.abs(cameras.lat - 37.5665) < 0.01)


def _error(tmp_path: Path, config: dict) -> str:
    with pytest.raises(PlanConfigError) as caught:
        run_plan(parse_config(config, tmp_path))
    return str(caught.value)


def test_no_coordinates_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "noxy.csv"
    bad.write_text("address,weight\nMill Ave,1\n", encoding="utf-8")
    config = _seoul_config(tmp_path, _korean_csv(tmp_path / "c.csv", "cp949"))
    config["demand"][0] = {"name": "bad", "path": str(bad)}
    message = _error(tmp_path, config)
    assert "no coordinates" in message and "noxy.csv" in message and "lat_column" in message


def test_projected_coordinates_without_crs_is_a_wrong_crs_error(tmp_path: Path) -> None:
    crimes = real_points("crimes")  # state-plane feet written out as if they were lon/lat
    path = tmp_path / "feet.csv"
    pd.DataFrame({"lat": crimes.geometry.y, "lon": crimes.geometry.x}).to_csv(path, index=False)
    config = _seoul_config(tmp_path, _korean_csv(tmp_path / "c.csv", "cp949"))
    config["demand"][0] = {"name": "crimes", "path": str(path)}
    message = _error(tmp_path, config)
    assert "wrong CRS" in message and "crs:" in message
    # Declaring the real CRS fixes it.
    config["demand"][0]["crs"] = crimes.crs.to_wkt()
    config["existing_cameras"] = []
    config["candidates"] = {"points": [{"path": "libpysal:geodanet/schools.shp"}]}
    assert run_plan(parse_config(config, tmp_path)).crs.to_epsg() == 32612


def test_layers_far_apart_point_at_the_crs(tmp_path: Path) -> None:
    config = _seoul_config(tmp_path, _korean_csv(tmp_path / "c.csv", "cp949"))
    config["candidates"] = {"points": [{"path": "libpysal:geodanet/schools.shp"}]}  # Arizona vs Seoul
    assert "km from the demand layers: check their CRS" in _error(tmp_path, config)


def test_empty_layer_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("lat,lon\n", encoding="utf-8")
    config = _seoul_config(tmp_path, _korean_csv(tmp_path / "c.csv", "cp949"))
    config["demand"].append({"name": "empty", "path": str(empty)})
    assert "the layer is empty" in _error(tmp_path, config)
    config["demand"][1] = {"name": "none", "path": str(GEODANET / "crimes.shp"), "where": "POLYID < 0"}
    assert "empty after where" in _error(tmp_path, config)


def test_budget_larger_than_candidates_is_a_clear_error(tmp_path: Path) -> None:
    config = _seoul_config(tmp_path, _korean_csv(tmp_path / "c.csv", "cp949"))
    config["candidates"] = {"h3": {"resolution": 9}}
    config["budget"] = {"cameras": 500}
    message = _error(tmp_path, config)
    assert "budget.cameras = 500 is larger than the" in message and "candidate sites" in message


def test_config_mistakes_are_listed_with_their_place(tmp_path: Path) -> None:
    with pytest.raises(PlanConfigError) as caught:
        parse_config(
            {
                "demand": [],
                "candidates": {},
                "budget": {"cameras": 2, "total_cost": 5},
                "coverage": {"new_camera_type": "dome"},
            },
            tmp_path,
        )
    message = str(caught.value)
    for expected in ("demand:", "candidates:", "budget:", "exactly one of budget.cameras", "new_camera_type 'dome'"):
        assert expected in message


def test_metric_crs_choice() -> None:
    assert metric_crs(np.array([126.98]), np.array([37.57])).to_epsg() == 5186  # Seoul
    assert metric_crs(np.array([129.07]), np.array([35.18])).to_epsg() == 5186  # Busan
    assert metric_crs(np.array([-111.83]), np.array([33.41])).to_epsg() == 32612  # Tempe
    assert metric_crs(np.array([151.2]), np.array([-33.87])).to_epsg() == 32756  # Sydney
    with pytest.raises(PlanConfigError, match="not a projected CRS"):
        metric_crs(np.array([0.0]), np.array([0.0]), "EPSG:4326")


def test_sector_and_obstacles_narrow_coverage() -> None:
    camera = np.array([[0.0, 0.0]])
    points = np.array([[0.0, 30.0], [0.0, -30.0], [30.0, 0.0], [0.0, 80.0]])  # north, south, east, beyond
    disc = coverage_matrix(points, camera, np.array([50.0])).toarray()[:, 0]
    assert disc.tolist() == [True, True, True, False]
    north = coverage_matrix(points, camera, np.array([50.0]), np.array([0.0]), np.array([90.0])).toarray()[:, 0]
    assert north.tolist() == [True, False, False, False]
    wall = shapely.box(-5, 10, 5, 12)  # a wall between the camera and the northern point
    blocked = coverage_matrix(points, camera, np.array([50.0]), obstacles=[wall]).toarray()[:, 0]
    assert blocked.tolist() == [False, True, True, False]


def _cctv(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cctv.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cctv_plan_runs_the_shipped_example_in_under_a_minute(tmp_path: Path) -> None:
    started = time.monotonic()
    done = _cctv("plan", "--config", "samples/planning/example.yaml", "--out", str(tmp_path))
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 60
    for name in ("sites.csv", "sites.geojson", "map.png", "map.html", "report.md"):
        assert (tmp_path / name).stat().st_size > 0
    sites = pd.read_csv(tmp_path / "sites.csv")
    assert len(sites) == 8 and sites["rank"].tolist() == list(range(1, 9))
    geo = json.loads((tmp_path / "sites.geojson").read_text())
    assert [f["geometry"]["coordinates"] for f in geo["features"]] == sites[["lon", "lat"]].values.tolist()
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "map.html").read_text()
    assert "<svg" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # offline
    assert "existing cameras: 3" in (tmp_path / "report.md").read_text()


def test_cctv_plan_bad_config_exits_2_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "plan.yaml"
    config.write_text("demand: []\ncandidates: {h3: {resolution: 9}}\nbudget: {cameras: 3}\n", encoding="utf-8")
    done = _cctv("plan", "--config", str(config), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "name at least one demand layer" in done.stderr
    assert not (tmp_path / "out").exists()


def test_polygon_demand_spreads_its_weight_inside_the_polygon(tmp_path: Path) -> None:
    """A park-like polygon (the hull of the real Tempe schools) with weight 10 becomes points inside it."""
    schools = real_points("schools").to_crs("EPSG:4326")
    park = schools.union_all().convex_hull
    path = tmp_path / "park.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "geometry": shapely.geometry.mapping(park), "properties": {"visitors": 10}}
                ],
            }
        )
    )
    config = {
        "demand": [{"name": "park", "kind": "vulnerable", "path": str(path), "weight_column": "visitors"}],
        "candidates": {"points": [{"path": "libpysal:geodanet/schools.shp"}]},
        "coverage": {"camera_types": {"fixed": {"radius_m": 100}}},
        "budget": {"cameras": 2},
        "hotspots": {"enabled": False},
    }
    result = run_plan(parse_config(config, tmp_path))
    assert len(result.demand.xy) > 10
    assert result.demand.weight.sum() == pytest.approx(10.0)
    back = shapely.points(*np.column_stack(to_wgs84(result.crs, result.demand.xy)).T)
    assert shapely.contains(park.buffer(1e-9), back).all()


def test_crimes_by_type_and_time_and_an_obstacle_end_to_end(tmp_path: Path) -> None:
    """`where:` keeps night-time thefts only; a building polygon hides one of them from the camera."""
    crimes = pd.DataFrame(
        {
            "위도": [37.56660, 37.56700, 37.56620, 37.56690],
            "경도": [126.97800, 126.97797, 126.97797, 126.97840],
            "type": ["theft", "theft", "assault", "theft"],
            "hour": [22, 23, 21, 9],
        }
    )
    path = tmp_path / "crimes.csv"
    path.write_bytes(crimes.to_csv(index=False).encode("cp949"))
    camera = tmp_path / "cams.csv"
    camera.write_text("camera_id,lat,lon\ncam-1,37.56650,126.97797\n", encoding="utf-8")
    # A building between the camera and the second theft (about 22 m north of the camera).
    building = shapely.box(126.97780, 37.56665, 126.97815, 37.56680)
    obstacles = tmp_path / "buildings.geojson"
    obstacles.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": shapely.geometry.mapping(building), "properties": {}}],
            }
        )
    )
    config = {
        "existing_cameras": [{"path": str(camera), "format": "points"}],
        "demand": [
            {"name": "night_theft", "kind": "crime", "path": str(path), "where": "type == 'theft' and hour >= 20"}
        ],
        "candidates": {"h3": {"resolution": 12}},
        "coverage": {"camera_types": {"fixed": {"radius_m": 80}}},
        "budget": {"cameras": 1},
        "hotspots": {"enabled": False},
        "solver": {"lscp": False},
    }
    open_view = run_plan(parse_config(config, tmp_path))
    assert len(open_view.demand.xy) == 2  # the assault and the morning theft are filtered out
    assert open_view.covered_before.tolist() == [True, True]
    config["coverage"]["obstacles"] = {"path": str(obstacles)}
    blocked = run_plan(parse_config(config, tmp_path))
    assert blocked.covered_before.tolist() == [True, False]
    assert blocked.sites["new_night_theft"].tolist() == [1.0]
