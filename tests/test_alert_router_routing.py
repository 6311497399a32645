"""Alert routing table, hot reload, and evidence snapshot rendering."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest
from PIL import Image
from pydantic import ValidationError

from libs.topics import destination_topic
from services.alert_router.config import CameraConfig
from services.alert_router.model import AlertEvent, AlertKind, FrameRef, Severity, TrackedBox
from services.alert_router.routing import (
    DEFAULT_ROUTES_PATH,
    RoutingConfigError,
    RoutingTable,
    RoutingTableLoader,
    route,
)
from services.alert_router.snapshot import SnapshotError, render_snapshot

REPO = Path(__file__).resolve().parents[1]
SAMPLE_VIDEO = REPO / "samples" / "vtest-h264.mp4"
NOON_MS = int(datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)  # a Monday
MIDNIGHT_MS = NOON_MS + 12 * 3600 * 1000 + 30 * 60 * 1000  # Tuesday 00:30 UTC


def alert(
    rule_type: str, severity: Severity = Severity.MEDIUM, at_ms: int = NOON_MS, kind: AlertKind = AlertKind.NEW
) -> AlertEvent:
    return AlertEvent(
        kind=kind,
        alert_id="a1",
        rule=rule_type,
        rule_type=rule_type,
        zone="z",
        camera_id="cam-1",
        site_id="site",
        severity=severity,
        started_at=at_ms,
        detected_at=at_ms,
        ended_at=None,
        track_ids=[1],
        boxes=[TrackedBox(0.4, 0.4, 0.5, 0.8, 1, "person", 0.9)],
        frame_ref=FrameRef("cctv.frames.v1", 0, 7),
        description="test",
    )


def cam(*tags: str) -> CameraConfig:
    return CameraConfig(camera_id="cam-1", tags=list(tags))


@pytest.fixture(scope="module")
def default_table() -> RoutingTable:
    return RoutingTable.from_yaml(DEFAULT_ROUTES_PATH)


# --------------------------------------------------------------------------- default table
def test_fire_event_reaches_fire(default_table: RoutingTable) -> None:
    assert route(default_table, alert("fire", Severity.HIGH), cam()) == ["fire"]
    assert destination_topic("fire") == "cctv.alerts.fire.v1"


def test_park_loitering_reaches_social_welfare_at_night_only(default_table: RoutingTable) -> None:
    assert route(default_table, alert("loitering", Severity.LOW, at_ms=MIDNIGHT_MS), cam("park")) == ["social-welfare"]
    assert route(default_table, alert("loitering", Severity.LOW, at_ms=NOON_MS), cam("park")) == []
    assert route(default_table, alert("loitering", Severity.LOW, at_ms=MIDNIGHT_MS), cam("market")) == []


def test_crime_hotspot_and_riverside_routes(default_table: RoutingTable) -> None:
    assert default_table.route(alert("intrusion"), cam("crime-hotspot")) == ["police"]
    assert default_table.route(alert("loitering", at_ms=MIDNIGHT_MS), cam("crime-hotspot", "park")) == [
        "police",
        "social-welfare",
    ]
    assert default_table.route(alert("crowding", Severity.MEDIUM), cam("riverside")) == ["disaster-management"]
    assert default_table.route(alert("crowding", Severity.MEDIUM), cam("market")) == []
    assert default_table.route(alert("crowding", Severity.HIGH), cam("market")) == ["disaster-management"]


def test_unrouted_alert_reaches_no_destination(default_table: RoutingTable) -> None:
    assert default_table.route(alert("running", Severity.LOW), cam("campus")) == []
    assert default_table.route(alert("line_crossing"), cam()) == []


def test_default_table_destinations_are_the_agencies(default_table: RoutingTable) -> None:
    assert default_table.destinations() == ["disaster-management", "fire", "police", "social-welfare"]


# --------------------------------------------------------------------------- matching semantics
def test_route_conditions_all_must_hold() -> None:
    table = RoutingTable.model_validate(
        {
            "routes": [
                {
                    "name": "serious-new-intrusions",
                    "rule_types": ["intrusion"],
                    "kinds": ["new"],
                    "min_severity": "high",
                    "camera_tags": ["school-zone", "hospital"],
                    "destinations": ["police", "school-safety"],
                }
            ]
        }
    )
    hit = alert("intrusion", Severity.HIGH)
    assert table.route(hit, cam("hospital")) == ["police", "school-safety"]
    assert table.route(alert("intrusion", Severity.CRITICAL), cam("school-zone")) == ["police", "school-safety"]
    assert table.route(alert("intrusion", Severity.MEDIUM), cam("hospital")) == []  # severity too low
    assert table.route(alert("intrusion", Severity.HIGH, kind=AlertKind.UPDATE), cam("hospital")) == []  # kind
    assert table.route(alert("loitering", Severity.HIGH), cam("hospital")) == []  # rule type
    assert table.route(hit, cam("park")) == []  # tags


@pytest.mark.parametrize("bad", ["Police", "fire dept", "fire.v2", "-fire", "fire-", "", "a" * 80, "fire_dept"])
def test_destination_names_must_be_topic_safe(bad: str) -> None:
    with pytest.raises(ValidationError, match="topic-safe"):
        RoutingTable.model_validate({"routes": [{"name": "r", "destinations": [bad]}]})
    with pytest.raises(ValueError, match="topic-safe"):
        destination_topic(bad)


def test_route_table_rejects_unknown_fields_and_duplicate_names() -> None:
    with pytest.raises(ValidationError, match="camera_tag"):
        RoutingTable.model_validate({"routes": [{"name": "r", "camera_tag": ["park"], "destinations": ["police"]}]})
    with pytest.raises(ValidationError, match="used more than once"):
        RoutingTable.model_validate(
            {"routes": [{"name": "r", "destinations": ["police"]}, {"name": "r", "destinations": ["fire"]}]}
        )


# --------------------------------------------------------------------------- hot reload
def _write(path: Path, text: str, mtime_s: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime_s, mtime_s))  # explicit mtimes: no reliance on clock granularity or sleeps


def test_loader_reloads_on_change_and_keeps_old_table_when_invalid(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    _write(path, "routes:\n  - {name: a, rule_types: [fire], destinations: [fire]}\n", 1_000)
    loader = RoutingTableLoader(path)
    assert loader.table.route(alert("fire"), cam()) == ["fire"]
    assert loader.reload_if_changed() is False  # untouched

    _write(path, "routes:\n  - {name: a, rule_types: [fire], destinations: [fire, police]}\n", 2_000)
    assert loader.reload_if_changed() is True
    assert loader.table.route(alert("fire"), cam()) == ["fire", "police"]

    _write(path, "routes:\n  - {name: a, rule_types: [fire], destinations: [Fire Brigade]}\n", 3_000)
    assert loader.reload_if_changed() is False
    assert loader.last_error is not None and "topic-safe" in loader.last_error and str(path) in loader.last_error
    assert loader.table.route(alert("fire"), cam()) == ["fire", "police"]  # old table still in force

    _write(path, "routes: [unclosed\n", 4_000)
    assert loader.reload_if_changed() is False and "not valid YAML" in (loader.last_error or "")

    _write(path, "routes:\n  - {name: b, rule_types: [fire], destinations: [fire]}\n", 5_000)
    assert loader.reload_if_changed() is True and loader.last_error is None
    assert loader.table.route(alert("fire"), cam()) == ["fire"]


def test_loader_first_load_must_succeed(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("routes:\n  - {name: a, destinations: []}\n", encoding="utf-8")
    with pytest.raises(RoutingConfigError, match="destinations"):
        RoutingTableLoader(path)
    with pytest.raises(RoutingConfigError, match="cannot read"):
        RoutingTableLoader(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- snapshot
@pytest.fixture(scope="module")
def real_frame_jpeg() -> bytes:
    """Frame 100 of the sample camera footage, JPEG-encoded at full size (768x576)."""
    with av.open(str(SAMPLE_VIDEO)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 100:
                image = frame.to_image()
                break
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


BOXES = [TrackedBox(0.30, 0.40, 0.36, 0.70, 3, "person", 0.88), TrackedBox(0.6, 0.5, 0.66, 0.8, 9, "person", 0.7)]


@pytest.mark.parametrize(("max_bytes", "max_dim"), [(200_000, 1280), (40_000, 640), (8_000, 640)])
def test_snapshot_under_cap_valid_jpeg_right_size(real_frame_jpeg: bytes, max_bytes: int, max_dim: int) -> None:
    source = Image.open(io.BytesIO(real_frame_jpeg))
    out = render_snapshot(real_frame_jpeg, BOXES, "intrusion in zone gate", max_bytes=max_bytes, max_dim=max_dim)
    assert len(out) <= max_bytes
    image = Image.open(io.BytesIO(out))
    image.verify()  # raises on a corrupt JPEG
    image = Image.open(io.BytesIO(out))
    assert image.format == "JPEG"
    assert max(image.size) <= max_dim
    # Aspect ratio of the camera frame is kept (4:3 for the sample), within a pixel of rounding.
    assert abs(image.width / image.height - source.width / source.height) < 0.01
    if max_bytes >= 40_000:
        scale = min(1.0, max_dim / max(source.size))
        assert image.size == (round(source.width * scale), round(source.height * scale))


def test_snapshot_draws_the_box(real_frame_jpeg: bytes) -> None:
    plain = Image.open(io.BytesIO(render_snapshot(real_frame_jpeg, [], "", max_bytes=500_000))).convert("RGB")
    boxed = Image.open(io.BytesIO(render_snapshot(real_frame_jpeg, BOXES[:1], "", max_bytes=500_000))).convert("RGB")
    # The left edge of box 3 at x=0.30, mid-height: red in the boxed image, not in the plain one.
    x, y = round(0.30 * plain.width), round(0.55 * plain.height)
    pixel = boxed.getpixel((x, y))
    assert isinstance(pixel, tuple)
    r, g, b = pixel[:3]
    assert r > 180 and g < 110 and b < 110
    assert plain.getpixel((x, y)) != boxed.getpixel((x, y))


def test_snapshot_errors_are_clear(real_frame_jpeg: bytes) -> None:
    with pytest.raises(SnapshotError, match="not a decodable image"):
        render_snapshot(b"not a jpeg", BOXES, "x")
    with pytest.raises(SnapshotError, match="raise max_bytes"):
        render_snapshot(real_frame_jpeg, BOXES, "x", max_bytes=300)
