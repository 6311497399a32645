"""Camera credentials by reference: a directory like a mounted Kubernetes Secret, re-read when it changes
(a running ingest picks up new credentials without a restart), environment variables as the fallback,
and never credentials in the URL of a source that does not take them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cctv.devstack.rtsp import gstreamer_available, start_rtsp_server
from cctv.devstack.services import ServiceProcess
from libs.cameras import CameraEntry
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import CAMERA_STATUS, pipeline_topics
from services.ingest.core import CameraError, camera_credentials, url_with_credentials
from services.ingest.credentials import CredentialResolver, CredentialsNotFound
from tests.kafka_helpers import TopicWatcher, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-h264.mp4"
SERDE = AvroSerde(shipped_catalog())


def test_directory_is_reread_when_a_file_changes_and_env_is_the_fallback(tmp_path: Path) -> None:
    resolver = CredentialResolver(tmp_path, environ={"CCTV_CAMERA_CREDENTIALS__LOBBY": "env-user:env-pw"})
    with pytest.raises(CredentialsNotFound) as missing:
        resolver.resolve("GATE07")
    assert str(tmp_path / "GATE07") in str(missing.value) and "CCTV_CAMERA_CREDENTIALS__GATE07" in str(missing.value)
    secret = tmp_path / "GATE07"
    secret.write_text("operator:first\n")
    assert resolver.resolve("GATE07") == "operator:first"
    # As the kubelet does for a Secret: a new file swapped in for the old one.
    replacement = tmp_path / ".GATE07.new"
    replacement.write_text("operator:second\n")
    os.replace(replacement, secret)
    assert resolver.resolve("GATE07") == "operator:second"
    assert resolver.resolve("LOBBY") == "env-user:env-pw"
    (tmp_path / "LOBBY").write_text("file-user:file-pw")
    assert resolver.resolve("LOBBY") == "file-user:file-pw"  # the file, which can change, wins


def test_sources_that_take_no_credentials_never_get_them(tmp_path: Path) -> None:
    (tmp_path / "CAM").write_text("operator:secret")
    resolver = CredentialResolver(tmp_path)
    file_camera = CameraEntry(camera_id="f", stream_url=f"file://{SAMPLE}", credentials_ref="CAM")
    assert camera_credentials(file_camera, resolver=resolver) is None
    assert url_with_credentials(f"file://{SAMPLE}", "operator:secret") == f"file://{SAMPLE}"
    rtsp_camera = CameraEntry(camera_id="r", stream_url="rtsp://10.0.0.7/live", credentials_ref="CAM")
    credentials = camera_credentials(rtsp_camera, resolver=resolver)
    assert url_with_credentials(rtsp_camera.stream_url, credentials) == "rtsp://operator:secret@10.0.0.7/live"
    with pytest.raises(CameraError, match="credentials 'NOPE' not found"):
        camera_credentials(
            CameraEntry(camera_id="x", stream_url="rtsp://h/x", credentials_ref="NOPE"), resolver=resolver
        )


def test_a_credential_file_written_while_ingest_runs_brings_a_failed_camera_online(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path, publish_cameras
) -> None:
    if not gstreamer_available():  # `make test` installs it, so its absence is a failure
        pytest.fail("GStreamer RTSP server not available: run scripts/install-system-deps.sh (make test does)")
    create_topics(kafka_settings, pipeline_topics())
    secrets = tmp_path / "camera-credentials"
    secrets.mkdir()
    password = f"pw-{unique}"
    ref = f"GATE_{unique}".upper()
    camera = f"gate-{unique}"
    server = start_rtsp_server({"cam": SAMPLE}, port=free_port(), user="operator", password=password)
    ingest = ServiceProcess(
        "ingest",
        {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "CCTV_HTTP__PORT": "0",
            "CCTV_INSTANCE_ID": f"cred-{unique}",
            "CCTV_GROUP_ID": f"cred-{unique}",
            "CCTV_LOG__FORMAT": "text",
            "CCTV_CREDENTIALS_DIR": str(secrets),
            "CCTV_PULL__BACKOFF_MAX_S": "2",
            "CCTV_PULL__STATUS_INTERVAL_S": "2",
        },
        tmp_path / "ingest.log",
    ).start()
    try:
        with TopicWatcher(
            kafka_settings, CAMERA_STATUS, "CameraStatus", SERDE, lambda v: v["camera_id"] == camera
        ) as watch:
            publish_cameras([CameraEntry(camera_id=camera, stream_url=server.urls["cam"], credentials_ref=ref)])
            failed = wait_for(
                lambda: [s for s in watch.snapshot() if s["state"] == "FAILED"], 60, "FAILED without credentials"
            )
            assert f"credentials {ref!r} not found" in failed[0]["reason"]
            pid = ingest.pid

            (secrets / ref).write_text(f"operator:{password}\n")
            wait_for(
                lambda: any(s["state"] == "ONLINE" for s in watch.snapshot()), 60, "ONLINE after the file appeared"
            )
            assert ingest.alive and ingest.pid == pid  # no restart
            assert all(password not in (s["reason"] or "") for s in watch.snapshot())
        assert password not in ingest.log_text()
    finally:
        ingest.stop()
        server.stop()
