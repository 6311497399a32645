"""The ingest service follows the live camera inventory: an edited camera is pulled again from its new
source, a camera set to `enabled: false` and a deleted camera stop, and the others flow on untouched."""

from __future__ import annotations

from pathlib import Path

from cctv.devstack.services import ServiceProcess
from cctv.inventory import publish
from libs.cameras import CameraEntry
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import CAMERA_STATUS, VIDEO_PACKETS, pipeline_topics
from tests.kafka_helpers import GRACEFUL_STOP_S, TopicWatcher, wait_for

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "samples" / "vtest-360p15.mp4"  # 640x360
LARGE = REPO / "samples" / "vtest-h264.mp4"  # 768x576
SERDE = AvroSerde(shipped_catalog())


def test_ingest_follows_edits_disables_and_deletes(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path, publish_cameras
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    edited, disabled, deleted, steady = (f"{role}-{unique}" for role in ("edited", "disabled", "deleted", "steady"))
    mine = {edited, disabled, deleted, steady}

    def camera(camera_id: str, sample: Path = SMALL, enabled: bool = True) -> CameraEntry:
        return CameraEntry(
            camera_id=camera_id, stream_url=f"file://{sample}", loop=True, realtime=True, enabled=enabled
        )

    statuses = TopicWatcher(kafka_settings, CAMERA_STATUS, "CameraStatus", SERDE, lambda v: v["camera_id"] in mine)
    packets = TopicWatcher(kafka_settings, VIDEO_PACKETS, "VideoPacket", SERDE, lambda v: v["camera_id"] in mine)
    replica = ServiceProcess(
        "ingest",
        {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "CCTV_HTTP__PORT": "0",
            "CCTV_INSTANCE_ID": f"i-{unique}",
            "CCTV_GROUP_ID": f"cctv-ingest-{unique}",
            "CCTV_LOG__FORMAT": "text",
        },
        tmp_path / "ingest.log",
    ).start()

    def pulled() -> set[str]:
        return {p["camera_id"] for p in packets.snapshot()}

    def stopped(camera_id: str) -> list[dict]:
        return [s for s in statuses.snapshot() if s["camera_id"] == camera_id and s["state"] == "STOPPED"]

    try:
        publish_cameras([camera(c) for c in sorted(mine)])
        wait_for(lambda: pulled() == mine, 120, "packets from all four cameras")
        edits_at = len(packets.snapshot())
        publish_cameras([camera(edited, LARGE), camera(disabled, enabled=False)])
        publish(kafka_settings, SERDE, [], [deleted])

        def edited_from_new_source() -> bool:
            return any(p["camera_id"] == edited and p["width"] == 768 for p in packets.snapshot()[edits_at:])

        wait_for(edited_from_new_source, 60, "the edited camera pulled from its new source")
        wait_for(lambda: stopped(disabled) and stopped(deleted), 60, "the disabled and deleted cameras to stop")
        stops_at = len(packets.snapshot())
        # The steady camera flows on for two more seconds (15 fps) while the stopped ones stay silent.
        wait_for(
            lambda: sum(p["camera_id"] == steady for p in packets.snapshot()[stops_at:]) >= 30,
            60,
            "the steady camera to go on",
        )
        assert replica.alive
    finally:
        assert replica.stop(timeout_s=GRACEFUL_STOP_S) == 0, replica.log_text()[-2000:]
        statuses.close()
        packets.close()

    # Judged by ingest's own clock, not by the order the test's two watchers happen to read two topics in:
    # no packet of a stopped camera was received after its STOPPED status was written.
    # (+1 ms: the status time is in whole milliseconds, packet times in microseconds)
    stopped_at_us = {camera: (stopped(camera)[0]["timestamp"] + 1) * 1000 for camera in (disabled, deleted)}
    late = [
        (p["camera_id"], p["capture_time"] - stopped_at_us[p["camera_id"]])
        for p in packets.snapshot()
        if p["camera_id"] in stopped_at_us and p["capture_time"] > stopped_at_us[p["camera_id"]]
    ]
    assert not late, f"packets received after STOPPED (camera, µs late): {late[:5]}"
    after_stops = {p["camera_id"] for p in packets.snapshot()[stops_at:]}
    assert {edited, steady} <= after_stops
    log = replica.log_text()
    assert f"stopped camera {deleted}: removed from inventory" in log
    # The edit starts a new session from the new source at a keyframe; the steady camera kept its session.
    new_source = [p for p in packets.snapshot() if p["camera_id"] == edited and p["width"] == 768]
    assert new_source[0]["is_keyframe"] and new_source[0]["sequence"] == 0
    steady_sessions = {p["session_id"] for p in packets.snapshot() if p["camera_id"] == steady}
    assert len(steady_sessions) == 1, "an edit of other cameras must not restart this one"
