"""A new rule type is one module: written here as a file outside the package, imported, and then
validated by the camera inventory and evaluated by the pipeline exactly like the built-in rules."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import ClassVar, Literal

import pytest

from cctv.inventory import InventoryError, parse_yaml
from libs.cameras import CameraEntry
from services.alert_router.config import CameraConfig, SeverityPolicy
from services.alert_router.model import AlertKind, Det, FrameDetections, FrameRef, Severity
from services.alert_router.pipeline import CameraPipeline
from services.alert_router.rules import Firing, RuleConfigBase, RuleFrame, register_rule, registered_rules
from services.alert_router.rules.intrusion import IntrusionRule

# The whole of a new rule type, as its author would write it.
OCCUPANCY_MODULE = '''
"""Occupancy: more watched objects inside the zone at once than it may hold."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from services.alert_router.model import Severity
from services.alert_router.rules import Firing, RuleConfigBase, RuleFrame, register_rule
from services.alert_router.rules.base import in_zone


class OccupancyRule(RuleConfigBase):
    default_severity: ClassVar[Severity] = Severity.HIGH

    type: Literal["occupancy"] = "occupancy"
    max_count: int = Field(default=1, ge=0)


def evaluate_occupancy(rule: OccupancyRule, frame: RuleFrame) -> Firing | None:
    inside = [t for t in frame.watched if in_zone(t, frame.zone)]
    if len(inside) <= rule.max_count:
        return None
    return Firing(inside, f"{len(inside)} in zone '{frame.zone.name}', more than {rule.max_count}")


register_rule(OccupancyRule, evaluate_occupancy)
'''

NOON_MS = int(datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
INVENTORY = """\
cameras:
  - camera_id: lobby-1
    stream_url: rtsp://127.0.0.1:9/lobby
    zones:
      - name: lift-lobby
        polygon: [[0.2, 0.2], [0.8, 0.2], [0.8, 0.9], [0.2, 0.9]]
        rules:
          - {{type: occupancy, {params}}}
"""


@pytest.fixture(scope="module")
def occupancy_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("rule_plugin")
    (folder / "occupancy_rule_plugin.py").write_text(OCCUPANCY_MODULE, encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("occupancy_rule_plugin")
    finally:
        sys.path.remove(str(folder))


def inventory_camera(params: str) -> CameraConfig:
    """As the alert-router gets it: inventory YAML -> cctv.cameras.v1 record -> CameraEntry -> CameraConfig."""
    (entry,) = parse_yaml(INVENTORY.format(params=params))
    read_back = CameraEntry.from_record(entry.to_record(updated_at_ms=NOON_MS))
    return CameraConfig.from_entry(read_back)


def frames_with_people(count: int, seconds: int) -> list[FrameDetections]:
    """`count` people standing side by side inside the zone, one frame a second."""
    people = [Det(0.3 + 0.1 * i, 0.4, 0.35 + 0.1 * i, 0.7, 0, "person", 0.9) for i in range(count)]
    return [
        FrameDetections("lobby-1", s, NOON_MS + s * 1000, FrameRef("cctv.frames.v1", 0, s), 1280, 720, people)
        for s in range(seconds)
    ]


def test_the_module_registers_its_type_config_and_default_severity(occupancy_module: ModuleType) -> None:
    registered = registered_rules()["occupancy"]
    assert registered.config is occupancy_module.OccupancyRule
    assert registered.evaluate is occupancy_module.evaluate_occupancy
    assert SeverityPolicy().severity_for("occupancy", []) is Severity.HIGH
    assert SeverityPolicy().severity_for("intrusion", []) is Severity.MEDIUM  # built-ins keep theirs


def test_inventory_validates_the_new_rule_with_line_numbered_errors(occupancy_module: ModuleType) -> None:
    rule = inventory_camera("max_count: 2").zones[0].rules[0]
    assert isinstance(rule, occupancy_module.OccupancyRule) and rule.max_count == 2
    with pytest.raises(InventoryError) as caught:
        parse_yaml(INVENTORY.format(params="max_count: -1, max_persons: 3"))
    (problem,) = [str(e) for e in caught.value.errors]
    assert problem.startswith("line 2 (lobby-1)"), problem
    assert "zones.0.rules.0.occupancy.max_count: Input should be greater than or equal to 0" in problem, problem
    assert "zones.0.rules.0.occupancy.max_persons: Extra inputs are not permitted" in problem, problem


def test_the_new_rule_fires_through_the_pipeline(occupancy_module: ModuleType) -> None:
    camera = inventory_camera("max_count: 2")
    pipeline = CameraPipeline(camera)
    events = [e for f in frames_with_people(3, seconds=4) for e in pipeline.process(f)]
    assert [e.kind for e in events] == [AlertKind.NEW]
    alert = events[0]
    assert alert.rule_type == "occupancy" and alert.zone == "lift-lobby" and alert.severity is Severity.HIGH
    assert len(alert.track_ids) == 3 and "3 in zone 'lift-lobby', more than 2" in alert.description
    quiet = CameraPipeline(camera)
    assert [e for f in frames_with_people(2, seconds=4) for e in quiet.process(f)] == []


def test_registry_refuses_a_taken_name_and_a_config_without_its_type_literal() -> None:
    def never(rule: RuleConfigBase, frame: RuleFrame) -> Firing | None:
        return None

    class AnotherIntrusion(RuleConfigBase):
        type: Literal["intrusion"] = "intrusion"

    with pytest.raises(ValueError, match=r"'intrusion' is already registered by .*intrusion\.IntrusionRule"):
        register_rule(AnotherIntrusion, never)
    assert registered_rules()["intrusion"].config is IntrusionRule

    class Untyped(RuleConfigBase):
        limit: ClassVar[int] = 3

    with pytest.raises(TypeError, match=r"Untyped needs a field `type: Literal\['<rule name>'\]"):
        register_rule(Untyped, never)
