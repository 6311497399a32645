"""The alert-router Faust app on the real broker: incidents survive a crash, poison goes to the DLQ."""

from __future__ import annotations

import time
from pathlib import Path

import av

from cctv.devstack.services import ServiceProcess
from libs.cameras import CameraEntry
from libs.kafka import make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import ALERTS, DETECTIONS, DLQ, FRAMES
from tests.kafka_helpers import TopicWatcher, wait_for

REPO = Path(__file__).resolve().parents[1]
SERDE = AvroSerde(shipped_catalog())
PERSON = {"class_id": 0, "class_name": "person", "score": 0.8, "box": {"x1": 0.40, "y1": 0.30, "x2": 0.46, "y2": 0.55}}


def real_frame_jpeg() -> bytes:
    with av.open(str(REPO / "samples" / "vtest-h264.mp4")) as container:
        frame = next(container.decode(video=0))
        import io

        buffer = io.BytesIO()
        frame.to_image().save(buffer, format="JPEG")
        return buffer.getvalue()


def router(kafka: KafkaSettings, app_id: str, tmp_path: Path, tag: str) -> ServiceProcess:
    return ServiceProcess("alert-router", {
        "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "CCTV_HTTP__PORT": "0", "CCTV_GROUP_ID": app_id,
        "CCTV_DATA_DIR": str(tmp_path / f"faust-{tag}"), "CCTV_INCIDENTS__END_GRACE_S": "2",
        "CCTV_INCIDENTS__UPDATE_INTERVAL_S": "60", "CCTV_LOG__FORMAT": "text",
    }, tmp_path / f"router-{tag}.log").start()


def test_killed_router_resumes_incident_without_second_new_and_ends_it(
    kafka_settings: KafkaSettings, publish_cameras, unique: str, tmp_path: Path
) -> None:
    camera = f"restart-{unique}"
    publish_cameras([CameraEntry(camera_id=camera, stream_url="file:///dev/null", tags=["crime-hotspot"], zones=[
        {"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "rules": [{"type": "intrusion"}]}])])
    producer = make_producer(kafka_settings, "test")
    frame_offsets: list[tuple[int, int]] = []
    producer.produce(FRAMES, key=camera, value=SERDE.serialize(FRAMES, "Frame", {
        "camera_id": camera, "session_id": "s", "sequence": 0, "capture_time": time.time_ns() // 1000, "pts_us": 0,
        "source_partition": 0, "source_offset": 0, "width": 768, "height": 576, "jpeg": real_frame_jpeg(),
        "motion_score": 0.1, "reason": "MOTION", "sampled_at": time.time_ns() // 1000,
    }), on_delivery=lambda _e, m: frame_offsets.append((m.partition(), m.offset())))
    producer.flush(30)
    partition, offset = frame_offsets[0]
    sequence = iter(range(10_000))

    def send(objects: list[dict]) -> None:
        producer.produce(DETECTIONS, key=camera, value=SERDE.serialize(DETECTIONS, "Detections", {
            "camera_id": camera, "frame": {"topic": FRAMES, "partition": partition, "offset": offset},
            "session_id": "s", "sequence": next(sequence), "capture_time": time.time_ns() // 1000,
            "width": 768, "height": 576, "objects": objects,
            "model": {"name": "m", "version": "1", "sha256": "0" * 64}, "inference_ms": 1.0,
            "detected_at": time.time_ns() // 1000,
        }))
        producer.flush(10)

    alerts = TopicWatcher(kafka_settings, ALERTS, "Alert", SERDE, lambda v: v["camera_id"] == camera)
    letters = TopicWatcher(kafka_settings, DLQ, "DeadLetter", SERDE, lambda v: v["key"] == camera.encode())
    app_id = f"router-{unique}"
    first = router(kafka_settings, app_id, tmp_path, "1")
    second = None
    try:
        # A person stands in the zone: one NEW.
        def person_until(condition, what: str, timeout_s: float = 90) -> None:
            def step() -> bool:
                send([PERSON])
                return condition()
            wait_for(step, timeout_s, what, interval_s=0.4)

        person_until(lambda: any(a["kind"] == "NEW" for a in alerts.snapshot()), "the NEW alert")
        alert_id = alerts.snapshot()[0]["alert_id"]
        assert alerts.snapshot()[0]["snapshot_jpeg"][:2] == b"\xff\xd8"
        for _ in range(5):  # the incident goes on; state reaches the changelog
            send([PERSON])
            time.sleep(0.3)
        # Wait until the router has committed what it processed (its state is in the changelog then).
        time.sleep(3)
        first.kill()  # SIGKILL mid-incident: no goodbye, no final commit

        second = router(kafka_settings, app_id, tmp_path, "2")
        person_until(lambda: "recovery complete" in second.log_text(), "the restarted router to recover its table")
        for _ in range(8):
            send([PERSON])
            time.sleep(0.4)
        # The person leaves: END after the 2 s grace.
        wait_for(lambda: send([]) or any(a["kind"] == "END" for a in alerts.snapshot()), 60, "the END alert",
                 interval_s=0.4)
        producer.produce(DETECTIONS, key=camera, value=b"\x00\x00\x00\x00\x63garbage")
        producer.flush(10)
        wait_for(lambda: letters.snapshot(), 30, "the poison detections on the DLQ")
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
        alerts.close()
        letters.close()
    mine = [a for a in alerts.snapshot() if a["alert_id"] == alert_id]
    kinds = [a["kind"] for a in mine]
    assert kinds.count("NEW") == 1, (kinds, second.log_text()[-2000:])
    assert kinds[-1] == "END" and kinds.count("END") == 1
    assert [a["sequence"] for a in mine] == sorted(a["sequence"] for a in mine)
    assert "police" in mine[0]["destinations"]
    assert letters.snapshot()[0]["source_topic"] == DETECTIONS
