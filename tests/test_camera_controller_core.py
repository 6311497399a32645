"""The camera-controller's pure core: the CRD <-> CameraEntry contract, credentials policy, id claims,
resync planning, status pacing and the Lease decision. Plain functions, no cluster needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cctv.inventory import parse_yaml
from libs.cameras import CameraEntry
from services.camera_controller.core import (
    FIELD_PATHS,
    CameraView,
    CredentialPolicy,
    InvalidCamera,
    LeaseState,
    StatusBoard,
    TokenBucket,
    check_credentials,
    claim_ids,
    fingerprint,
    from_entry,
    k8s_name,
    lease_action,
    plan_resync,
    set_condition,
    to_entry,
)

REPO = Path(__file__).resolve().parents[1]
CRD = yaml.safe_load((REPO / "helm" / "cctv-platform" / "crds" / "cameras.cctv-platform.io.yaml").read_text())
SPEC_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
SAMPLE_INVENTORY = (
    (REPO / "samples" / "cameras.yaml")
    .read_text()
    .replace("{repo}", str(REPO))
    .replace("{rtsp}", "rtsp://127.0.0.1:8554")
)
POLICY = CredentialPolicy("cctv-camera-credentials", "cctv")


def camera(name: str = "gate-1", namespace: str = "cctv", created: str = "2026-11-30T00:00:00Z", **spec) -> dict:
    return {
        "apiVersion": "cctv-platform.io/v1",
        "kind": "Camera",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created, "generation": 1},
        "spec": {"streamUrl": "rtsp://10.64.0.10/live", **spec},
    }


def test_every_field_of_the_camera_model_has_a_home_in_the_crd() -> None:
    assert set(FIELD_PATHS) == set(CameraEntry.model_fields), "a CameraEntry field without a CRD mapping"
    for field, path in FIELD_PATHS.items():
        top = path.split()[0].split(".")[1]
        assert top in SPEC_SCHEMA["properties"], f"{field} -> {path}: not in the CRD schema"
    mapped = {path.split()[0].split(".")[1] for path in FIELD_PATHS.values()}
    assert set(SPEC_SCHEMA["properties"]) == mapped, "a CRD field the controller would ignore"


def test_crd_defaults_match_the_model_defaults() -> None:
    defaults = CameraEntry(camera_id="x", stream_url="rtsp://h/x")
    props = SPEC_SCHEMA["properties"]
    assert props["rtspTransport"]["default"] == defaults.rtsp_transport
    assert props["loop"]["default"] is defaults.loop and props["realtime"]["default"] is defaults.realtime
    assert props["timezone"]["default"] == defaults.timezone
    assert props["enabled"]["default"] is defaults.enabled
    assert props["sampling"]["properties"]["mode"]["default"] == defaults.sampling.mode
    assert props["sampling"]["properties"]["heartbeatSeconds"]["default"] == defaults.sampling.heartbeat_s
    assert props["cameraId"]["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


def test_inventory_entries_convert_to_cameras_and_back_unchanged() -> None:
    entries = parse_yaml(SAMPLE_INVENTORY) + [
        CameraEntry(
            camera_id="Gate_7:north",
            name="Gate 7",
            site_id="s-7",
            stream_url="rtsp://10.64.0.7/live",
            credentials_ref="GATE_7",
            rtsp_transport="udp",
            tags=["Park"],
            sampling={"mode": "fps", "fps": 2},
        )
    ]
    for entry in entries:
        manifest = from_entry(entry, "cctv", credentials_secret="cctv-camera-credentials")
        back = to_entry(manifest, entry.credentials_ref)
        assert fingerprint(back) == fingerprint(entry), entry.camera_id
    odd = from_entry(entries[-1], "cctv", "cctv-camera-credentials")
    assert odd["metadata"]["name"] == "gate-7-north" and odd["spec"]["cameraId"] == "Gate_7:north"
    assert odd["spec"]["credentialsSecretRef"] == {"name": "cctv-camera-credentials", "key": "GATE_7"}


def test_camera_id_defaults_to_the_resource_name() -> None:
    entry = to_entry(
        camera("lobby", displayName="Lobby", siteId="hq", tags=["Indoor"], sampling={"mode": "fps", "fps": 5})
    )
    assert (entry.camera_id, entry.name, entry.site_id, entry.tags) == ("lobby", "Lobby", "hq", ["indoor"])
    assert (entry.sampling.mode, entry.sampling.fps) == ("fps", 5)
    assert to_entry(camera("lobby", cameraId="LOBBY-01")).camera_id == "LOBBY-01"


def test_zone_errors_the_schema_cannot_see_are_reported_with_the_alert_routers_words() -> None:
    bowtie = [{"name": "yard", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]], "rules": [{"type": "intrusion"}]}]
    with pytest.raises(InvalidCamera) as error:
        to_entry(camera(zones=bowtie))
    assert error.value.reason == "InvalidSpec"
    assert "zones" in str(error.value) and "intersect" in str(error.value).lower()


def test_credentials_only_from_the_mounted_secret_in_the_platform_namespace() -> None:
    spec = {"credentialsSecretRef": {"name": "cctv-camera-credentials", "key": "GATE_1"}}
    assert check_credentials({}, "cctv", POLICY, None) is None
    assert check_credentials(spec, "cctv", POLICY, {"GATE_1", "OTHER"}) == "GATE_1"
    cases = [
        (spec, "cctv", POLICY, {"OTHER"}, "CredentialsKeyMissing"),
        (spec, "cctv", POLICY, None, "CredentialsSecretMissing"),
        (spec, "district-7", POLICY, {"GATE_1"}, "CredentialsSecretNotAllowed"),
        (
            {"credentialsSecretRef": {"name": "admin-token", "key": "GATE_1"}},
            "cctv",
            POLICY,
            {"GATE_1"},
            "CredentialsSecretNotAllowed",
        ),
        (spec, "cctv", CredentialPolicy("", "cctv"), {"GATE_1"}, "CredentialsNotConfigured"),
    ]
    for case_spec, namespace, policy, keys, reason in cases:
        with pytest.raises(InvalidCamera) as error:
            check_credentials(case_spec, namespace, policy, keys)
        assert error.value.reason == reason


def test_the_oldest_resource_owns_a_camera_id() -> None:
    first = camera("gate", namespace="a", created="2026-11-01T00:00:00Z", cameraId="gate-1")
    second = camera("gate-1", namespace="b", created="2026-11-02T00:00:00Z")
    other = camera("other", namespace="a")
    owners, losers = claim_ids([second, other, first])
    assert owners["gate-1"] is first and owners["other"] is other
    assert losers == {"b/gate-1": "a/gate"}


def test_resync_publishes_differences_and_tombstones_what_the_cluster_lacks() -> None:
    a, b, c = (CameraEntry(camera_id=i, stream_url=f"rtsp://h/{i}") for i in "abc")
    changed_b = b.model_copy(update={"site_id": "moved"})
    publish, remove = plan_resync({"a": a, "b": changed_b}, {"a": a, "b": b, "c": c})
    assert [e.camera_id for e in publish] == ["b"] and remove == ["c"]
    assert plan_resync({"a": a}, {"a": a}) == ([], [])


def test_status_changes_are_urgent_and_drift_waits_for_the_refresh() -> None:
    board = StatusBoard(refresh_s=60)
    board.on_status({"camera_id": "a", "state": "ONLINE", "fps": 15.0, "reason": None, "timestamp": 1000})
    board.on_status({"camera_id": "z", "state": "ONLINE", "fps": 15.0, "reason": None, "timestamp": 1000})
    assert board.due(0.0, {"a"}) == ["a"], "only cameras with a resource"
    board.mark_written("a", 0.0)
    board.on_status({"camera_id": "a", "state": "ONLINE", "fps": 14.0, "reason": None, "timestamp": 2000})
    assert board.due(1.0, {"a"}) == []
    assert board.due(61.0, {"a"}) == ["a"]
    board.on_status({"camera_id": "a", "state": "FAILED", "fps": None, "reason": "timeout", "timestamp": 3000})
    board.on_status({"camera_id": "a", "state": "ONLINE", "fps": 1.0, "reason": None, "timestamp": 2500})  # late
    assert board.due(2.0, {"a"}) == ["a"] and board.views["a"].state == "FAILED"
    board.on_activity(
        {
            "camera_id": "a",
            "state": "ACTIVE",
            "motion_score": 0.3,
            "since": 1_764_460_800_000_000,
            "timestamp": 1_764_460_801_000_000,
        }
    )
    board.on_alert(
        {
            "camera_id": "a",
            "kind": "NEW",
            "detected_at": 1_764_460_800_000_000,
            "event_type": "intrusion",
            "severity": "HIGH",
            "alert_id": "al-1",
        }
    )
    patch = board.views["a"].patch()
    assert patch["state"] == "FAILED" and patch["reason"] == "timeout"
    assert (patch["activity"], patch["activitySince"]) == ("ACTIVE", "2025-11-30T00:00:00Z")
    assert patch["lastAlert"] == {
        "time": "2025-11-30T00:00:00Z",
        "eventType": "intrusion",
        "severity": "HIGH",
        "alertId": "al-1",
    }
    assert CameraView().patch() == {}


def test_token_bucket_paces_a_flood_of_status_writes() -> None:
    bucket = TokenBucket(rate=10, burst=50)
    granted_at_once = sum(bucket.take(0.0) for _ in range(3609))
    assert granted_at_once == 50
    granted_next_second = sum(bucket.take(1.0) for _ in range(3609))
    assert granted_next_second == 10


def test_lease_decisions() -> None:
    assert lease_action(None, "me", 100.0) == "create"
    assert lease_action(LeaseState("me", 90.0, 15), "me", 100.0) == "renew"
    assert lease_action(LeaseState("you", 90.0, 15), "me", 100.0) == "wait"
    assert lease_action(LeaseState("you", 80.0, 15), "me", 100.0) == "take"
    assert lease_action(LeaseState(None, 99.0, 15), "me", 100.0) == "take"


def test_condition_transition_time_moves_only_when_the_status_flips() -> None:
    first = set_condition([], "Ready", False, "InvalidSpec", "bad", 1)
    first[0]["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    again = set_condition(first, "Ready", False, "InvalidSpec", "still bad", 2)
    assert again[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z" and again[0]["observedGeneration"] == 2
    flipped = set_condition(again, "Ready", True, "Published", "ok", 3)
    assert len(flipped) == 1 and flipped[0]["lastTransitionTime"] != "2026-01-01T00:00:00Z"


def test_k8s_names_for_camera_ids() -> None:
    assert k8s_name("Gate_7:north") == "gate-7-north"
    assert k8s_name("cam.01") == "cam-01"
