"""Masked copies of evidence clips for release, against the real S3 server (SeaweedFS), the real broker
(audit) and the real models: `cctv evidence export` makes and downloads the masked copy (faces/heads
pixelated, the rest and the timing as in the original, signed and verifiable), the clip writer's worker
makes it on its own, and the unmasked original is refused to an operator (audited)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from cctv.devstack.s3 import ObjectStore
from libs.evidence_access import RELEASE, NotReady
from libs.evidence_audit import AuditLog
from libs.evidence_store import EvidenceStore
from libs.kafka import create_topics, make_producer
from libs.settings import KafkaSettings
from libs.topics import AUDIT, pipeline_topics
from services.clip_writer.core import ClipPolicy, Incident, Packet
from services.clip_writer.evidence import Actor, EvidenceDesk
from services.clip_writer.jobs import ClipJob
from services.clip_writer.masked_copies import MaskedCopies
from services.clip_writer.settings import MaskedCopySettings
from services.clip_writer.writer import ClipBuilder
from tests.clip_helpers import sample_packets
from tests.kafka_helpers import TopicWatcher, wait_for
from tests.masking_helpers import face_hidden, shared_detail
from tests.test_clip_writer_service import (
    REPO,
    SEED_B64,
    SERDE,
    SIGNING_KEY,
    ListSource,
    object_store,  # noqa: F401 (the fixture)
    s3_settings,
)

S = 1_000_000
FACES_AT_30S = json.loads((REPO / "tests" / "data" / "masking" / "faces.json").read_text())["images"][
    "vtest-h264.mp4#300"
]


def store_clip(store: EvidenceStore, alert_id: str, base: int, start_s: float, end_s: float, roll_s: float) -> dict:
    """The sample (played live from `base`) cut for an incident from start_s to end_s, as the writer stores it."""
    packets = [Packet.from_record(0, i, r.as_record()) for i, r in enumerate(sample_packets("cam-m", base))]
    builder = ClipBuilder(ClipPolicy(pre_roll_s=roll_s, post_roll_s=roll_s), ListSource(packets), store, SIGNING_KEY)
    incident = Incident(alert_id, "cam-m", "loitering", base + int(start_s * S), base + int(end_s * S))
    manifest = builder.finish(ClipJob(incident, 0, 0, ended=True))
    assert manifest is not None
    return manifest


def frames_of(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data)) as container:
        return list(container.decode(video=0))


def cli_env(kafka: KafkaSettings, store: ObjectStore, bucket: str) -> dict[str, str]:
    return os.environ | {
        "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CCTV_S3__ENDPOINT_URL": store.endpoint,
        "CCTV_S3__BUCKET": bucket,
        "CCTV_S3__ACCESS_KEY_ID": store.access_key,
        "CCTV_S3__SECRET_ACCESS_KEY": store.secret_key,
        "CCTV_EVIDENCE__SIGNING_KEY": SEED_B64,
    }


def test_export_makes_a_signed_masked_copy_that_hides_faces_and_keeps_the_rest_and_is_audited(
    kafka_settings: KafkaSettings,
    object_store: ObjectStore,  # noqa: F811
    unique: str,
    tmp_path: Path,
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    bucket, alert_id = f"release-{unique}", f"alert-{unique}"
    store = EvidenceStore(s3_settings(object_store, bucket))
    base = time.time_ns() // 1000 - 200 * S
    manifest = store_clip(store, alert_id, base, 29.0, 31.0, roll_s=1.0)  # 28 s .. 32 s: frame 300 inside
    desk = EvidenceDesk(store, AuditLog(make_producer(kafka_settings, "test-audit"), SERDE), SIGNING_KEY.public_key())
    audit = TopicWatcher(kafka_settings, AUDIT, "AuditRecord", SERDE, lambda v: v["alert_id"] == alert_id)
    operator = Actor("kim", frozenset({"operator"}), "10.0.0.7")
    with pytest.raises(NotReady, match="not made yet"):
        desk.authorise(alert_id, operator)  # nothing masked yet: nothing handed out

    out = tmp_path / "export"
    result = subprocess.run(
        [sys.executable, "-m", "cctv.cli", "evidence", "export", alert_id, "-o", str(out), "--actor", "lee"],
        check=False,
        capture_output=True,
        text=True,
        env=cli_env(kafka_settings, object_store, bucket),
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (masked_file,) = sorted(out.glob("*-masked-segment-*.mp4"))
    assert (out / f"{alert_id}-{RELEASE}").exists() and (out / f"{alert_id}-release.sig").exists()

    # The original is unchanged and still verifies; the copy is its own signed object next to it.
    original = store.get(manifest["objects"][0]["key"])
    release = desk.masked_manifest(alert_id)
    assert (
        release is not None
        and release["source_manifest_sha256"]
        and release["objects"][0]["key"].endswith("/masked/segment-000.mp4")
    )
    verification = desk.verify(alert_id)
    assert verification.ok, verification.problems
    assert any(line.startswith("masked copy: ") for line in verification.checked)

    masked = masked_file.read_bytes()
    before, after = frames_of(original), frames_of(masked)
    assert [f.pts for f in after] == [f.pts for f in before] and after[0].key_frame
    assert [f.key_frame for f in after] == [f.key_frame for f in before]
    at_30s = next(
        i
        for i, f in enumerate(before)
        if abs(manifest["clip"]["start_us"] + f.time * S - (base + 30 * S)) < 50_000  # the annotated frame 300
    )
    plain, hidden = before[at_30s].to_ndarray(format="rgb24"), after[at_30s].to_ndarray(format="rgb24")
    for face in FACES_AT_30S:
        assert face_hidden(plain, hidden, face), (face, shared_detail(plain, hidden, face))
    assert shared_detail(plain, hidden, [0, 330, 768, 576]) > 0.8  # no wholesale blur

    # Operators get the masked copy, never the original (refused and audited); supervisors need a reason.
    assert desk.authorise(alert_id, operator)[0]["key"] == release["objects"][0]["key"]
    with pytest.raises(PermissionError, match="unmasked original"):
        desk.authorise(alert_id, operator, "original", "curious")
    supervisor = Actor("park", frozenset({"supervisor"}), "10.0.0.9")
    with pytest.raises(PermissionError, match="reason"):
        desk.authorise(alert_id, supervisor, "original")
    assert desk.authorise(alert_id, supervisor, "original", "case 2026-77")[0]["key"] == manifest["objects"][0]["key"]

    records = wait_for(lambda: len(audit.snapshot()) >= 5 and audit.snapshot(), 30, "the export audit records")
    audit.close()
    assert [(r["actor"], r["what"], r["outcome"]) for r in records] == [
        ("lee", "evidence.download", "ALLOWED"),
        ("kim", "evidence.download", "ALLOWED"),
        ("kim", "evidence.download", "DENIED"),
        ("park", "evidence.download", "DENIED"),
        ("park", "evidence.download", "ALLOWED"),
    ]
    assert records[0]["detail"].startswith("masked: ") and "case 2026-77" in records[4]["detail"]

    # One changed byte of the masked copy: verify names it.
    key = release["objects"][0]["key"]
    data = bytearray(store.get(key) or b"")
    data[len(data) // 2] ^= 0x01
    store.put(key, bytes(data), "video/mp4")
    problems = desk.verify(alert_id).problems
    assert len(problems) == 1 and problems[0].startswith(f"masked copy: {key}: sha256"), problems


def test_the_clip_writers_worker_makes_the_masked_copy_of_clips_that_lack_one(
    object_store: ObjectStore,  # noqa: F811
    unique: str,
) -> None:
    bucket = f"worker-{unique}"
    settings = s3_settings(object_store, bucket)
    store = EvidenceStore(settings)
    base = time.time_ns() // 1000 - 200 * S
    store_clip(store, f"first-{unique}", base, 40.0, 41.0, roll_s=0.0)
    store_clip(store, f"second-{unique}", base, 50.0, 51.0, roll_s=0.0)
    worker = MaskedCopies(settings, MaskedCopySettings(), SIGNING_KEY, "clip-writer").start()
    try:
        assert worker.scan() == 2  # both lack release.json
        for alert_id in (f"first-{unique}", f"second-{unique}"):
            release = wait_for(
                lambda a=alert_id: store.get(store.key(a, RELEASE)), 300, f"the masked copy of {alert_id}"
            )
            assert json.loads(release)["created_by"] == "clip-writer"
        assert list(store.alert_ids(lacking=RELEASE)) == []
        assert worker.scan() == 0
    finally:
        worker.stop()
