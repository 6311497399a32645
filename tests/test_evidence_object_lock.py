"""Legal hold as real S3 Object Lock on the real S3 server (SeaweedFS): a held clip's objects cannot be
deleted through the S3 API by anyone holding the bucket's credentials, only hidden behind a delete
marker while the held version stays readable; after release, retention deletes every version."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from cctv.devstack.s3 import ObjectStore
from libs.evidence_audit import AuditLog
from libs.evidence_store import EvidenceStore
from libs.kafka import create_topics, make_producer
from libs.settings import KafkaSettings
from libs.topics import pipeline_topics
from services.clip_writer.evidence import Actor, EvidenceDesk
from services.clip_writer.manifest import sha256_hex
from tests.test_clip_writer_service import SERDE, SIGNING_KEY, object_store, s3_settings  # noqa: F401 (fixture)
from tests.test_evidence_release import store_clip

S = 1_000_000


def test_a_held_clip_cannot_be_deleted_through_the_s3_api_until_released(
    kafka_settings: KafkaSettings,
    object_store: ObjectStore,  # noqa: F811
    unique: str,
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    bucket, alert_id = f"lock-{unique}", f"held-{unique}"
    store = EvidenceStore(s3_settings(object_store, bucket))
    base = time.time_ns() // 1000 - 200 * S
    manifest = store_clip(store, alert_id, base, 40.0, 41.0, roll_s=0.0)
    client = store.client
    assert (
        client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    )
    desk = EvidenceDesk(store, AuditLog(make_producer(kafka_settings, "test-audit"), SERDE), SIGNING_KEY.public_key())
    supervisor = Actor("lee", frozenset({"supervisor"}), "10.0.0.9")
    desk.hold(alert_id, supervisor, "case 2026-1130")

    segment = manifest["objects"][0]["key"]
    head = client.head_object(Bucket=bucket, Key=segment)
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    assert store.lock.legal_hold(store.key(alert_id, "manifest.json"))
    # With the bucket's own credentials: deleting the held version is refused by the store itself.
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key=segment, VersionId=head["VersionId"])
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # A plain DELETE only adds a delete marker: the held version is still there, bytes intact.
    client.delete_object(Bucket=bucket, Key=segment)
    kept = client.get_object(Bucket=bucket, Key=segment, VersionId=head["VersionId"])["Body"].read()
    assert store.get(segment) is None  # hidden from plain GETs ...
    assert sha256_hex(kept) == manifest["objects"][0]["sha256"]  # ... but the held version is intact
    assert f"{segment}: missing from the bucket" in desk.verify(alert_id).problems  # and verify says so
    # Retention cannot purge it either (and the marker-based sweep skips it anyway).
    assert desk.sweep(now_us=base + 90 * 86_400 * S) == []

    desk.release(alert_id, supervisor, "case closed")
    assert not store.lock.legal_hold(store.key(alert_id, "manifest.json"))
    assert desk.sweep(now_us=base + 90 * 86_400 * S) == [alert_id]
    assert list(store.lock.versions(store.key(alert_id, ""))) == []  # every version gone: irrecoverable
