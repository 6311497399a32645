"""The least-privilege plan (cctv/acls.py) as plain data; tests/test_secured_pipeline.py proves it on a
real secured broker."""

from __future__ import annotations

from pathlib import Path

import yaml

from cctv.acls import Grant, acl_bindings, destinations_of, plan, strimzi_users
from libs.topics import DEFAULT_DESTINATIONS, pipeline_topics

REPO = Path(__file__).resolve().parents[1]
TOPICS = [spec.name for spec in pipeline_topics()]


def _topics_with(grants: list[Grant], principal: str, operation: str) -> set[str]:
    return {g.name for g in grants if g.principal == principal and g.kind == "topic" and operation in g.operations}


def test_each_service_reads_only_its_inputs_and_writes_only_its_outputs() -> None:
    grants = plan(TOPICS)
    assert _topics_with(grants, "cctv-ingest", "READ") == {"cctv.cameras.v1"}
    assert _topics_with(grants, "cctv-ingest", "WRITE") == {
        "cctv.video.packets.v1",
        "cctv.camera-status.v1",
        "cctv.dlq.v1",
    }
    assert _topics_with(grants, "cctv-frame-sampler", "READ") == {"cctv.video.packets.v1", "cctv.cameras.v1"}
    assert _topics_with(grants, "cctv-detector", "READ") == {"cctv.frames.v1"}
    assert _topics_with(grants, "cctv-detector", "WRITE") == {"cctv.detections.v1", "cctv.dlq.v1"}
    routed = {f"cctv.alerts.{d}.v1" for d in DEFAULT_DESTINATIONS}
    assert (
        _topics_with(grants, "cctv-alert-router", "WRITE")
        == {"cctv.alerts.v1", "cctv.dlq.v1", "cctv-alert-router"} | routed
    )
    # Nobody but ingest writes raw video; only the sampler, the clip-writer (evidence clips) and the share
    # gateway (live shares) read it; nobody but super users deletes.
    assert {g.principal for g in grants if g.name == "cctv.video.packets.v1" and "WRITE" in g.operations} == {
        "cctv-ingest"
    }
    assert {g.principal for g in grants if g.name == "cctv.video.packets.v1" and "READ" in g.operations} == {
        "cctv-frame-sampler",
        "cctv-clip-writer",
        "cctv-share-gateway",
    }
    # The console writes only operators' actions, shares and the ledger; the webhook dispatcher reads only
    # routed copies; the share gateway writes only the ledger and shares' expiry.
    assert _topics_with(grants, "cctv-console", "WRITE") == {
        "cctv.incident-actions.v1",
        "cctv.audit.v1",
        "cctv.shares.v1",
    }
    assert _topics_with(grants, "cctv-share-gateway", "WRITE") == {"cctv.audit.v1", "cctv.shares.v1"}
    assert _topics_with(grants, "cctv-dispatcher", "READ") == routed
    assert not [g for g in grants if {"DELETE", "ALTER", "ALL", "CLUSTER_ACTION"} & set(g.operations)]


def test_each_agency_reads_only_its_own_alerts() -> None:
    grants = plan(TOPICS)
    for destination in DEFAULT_DESTINATIONS:
        own = [g for g in grants if g.principal == f"agency-{destination}"]
        assert {(g.kind, g.name, g.operations) for g in own} == {
            ("topic", f"cctv.alerts.{destination}.v1", ("READ", "DESCRIBE")),
            ("group", f"agency-{destination}", ("READ", "DESCRIBE")),
        }


def test_plan_follows_the_topic_set() -> None:
    topics = [*TOPICS, "cctv.alerts.coast-guard.v1"]
    assert destinations_of(topics) == sorted([*DEFAULT_DESTINATIONS, "coast-guard"])
    grants = plan(topics)
    assert "cctv.alerts.coast-guard.v1" in _topics_with(grants, "agency-coast-guard", "READ")
    assert "cctv.alerts.coast-guard.v1" in _topics_with(grants, "cctv-alert-router", "WRITE")
    # No grant on a topic that is not in the set.
    without_dlq = plan([t for t in TOPICS if t != "cctv.dlq.v1"])
    assert not [g for g in without_dlq if g.name == "cctv.dlq.v1"]


def test_bindings_are_unique_per_resource_and_operation() -> None:
    """The broker rejects a request with duplicate bindings: reading and writing one topic is one grant."""
    grants = plan(TOPICS)
    keys = [(g.principal, g.kind, g.name, g.pattern) for g in grants]
    assert len(keys) == len(set(keys))
    bindings = acl_bindings(grants)
    assert len(bindings) == len(set(bindings)) == sum(len(g.operations) for g in grants)
    operator_cameras = next(g for g in grants if g.principal == "cctv-operator" and g.name == "cctv.cameras.v1")
    assert operator_cameras.operations == ("READ", "WRITE", "DESCRIBE")


def test_committed_strimzi_users_match_the_plan() -> None:
    committed = list(yaml.safe_load_all((REPO / "helm/cctv-platform/kafka-acls/kafka-users.yaml").read_text()))
    assert committed == strimzi_users(plan(TOPICS), "cctv"), "regenerate with `cctv acls plan --format strimzi`"
    police = next(u for u in committed if u["metadata"]["name"] == "agency-police")
    assert police["spec"]["authentication"] == {"type": "scram-sha-512"}
    assert [a["resource"] for a in police["spec"]["authorization"]["acls"]] == [
        {"type": "group", "name": "agency-police", "patternType": "prefix"},
        {"type": "topic", "name": "cctv.alerts.police.v1", "patternType": "literal"},
    ]
    router = next(u for u in committed if u["metadata"]["name"] == "cctv-alert-router")
    owned = next(
        a
        for a in router["spec"]["authorization"]["acls"]
        if a["resource"] == {"type": "topic", "name": "cctv-alert-router", "patternType": "prefix"}
    )
    assert owned["operations"] == ["Create", "Read", "Write", "Describe", "DescribeConfigs"]
