"""The alert-router Faust app on the real broker: incidents survive a crash, poison goes to the DLQ."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import av
from confluent_kafka import Consumer, Producer, TopicPartition

from cctv.devstack.services import ServiceProcess
from libs.cameras import CameraEntry
from libs.kafka import make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import ALERTS, DETECTIONS, DLQ, FRAMES
from tests.kafka_helpers import TopicWatcher, frame_record, wait_for
from tests.pipeline_helpers import service_env

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


def produce_evidence_frame(producer: Producer, camera: str) -> tuple[int, int]:
    """One real frame on the frames topic, as the sampler writes it; its (partition, offset) for evidence."""
    delivered: list[tuple[int, int]] = []
    frame = frame_record(camera, 0, real_frame_jpeg(), pts_us=0, width=768, height=576, motion_score=0.1)
    producer.produce(
        FRAMES,
        key=camera,
        value=SERDE.serialize(FRAMES, "Frame", frame),
        on_delivery=lambda _e, m: delivered.append((m.partition(), m.offset())),
    )
    producer.flush(30)
    return delivered[0]


def detections_record(
    camera: str, frame: tuple[int, int], sequence: int, capture_us: int, objects: list[dict]
) -> dict[str, Any]:
    """A Detections record of a 768x576 frame whose evidence image is at `frame` (partition, offset)."""
    return {
        "camera_id": camera,
        "frame": {"topic": FRAMES, "partition": frame[0], "offset": frame[1]},
        "session_id": "s",
        "sequence": sequence,
        "capture_time": capture_us,
        "width": 768,
        "height": 576,
        "objects": objects,
        "model": {"name": "m", "version": "1", "sha256": "0" * 64},
        "inference_ms": 1.0,
        "detected_at": time.time_ns() // 1000,
    }


# Longer than any restart on a loaded machine: the restarted router's wall-clock expiry must not END
# the incident before its backlog of frames is read. The test's camera clock jumps past it at the end.
END_GRACE_S = 120


def router(kafka: KafkaSettings, app_id: str, tmp_path: Path, tag: str) -> ServiceProcess:
    return ServiceProcess(
        "alert-router",
        service_env(kafka.bootstrap_servers, group=app_id)
        | {
            "CCTV_DATA_DIR": str(tmp_path / f"faust-{tag}"),
            "CCTV_INCIDENTS__END_GRACE_S": str(END_GRACE_S),
            "CCTV_INCIDENTS__UPDATE_INTERVAL_S": "60",
            "CCTV_EXPIRE_INTERVAL_S": "0.5",
        },
        tmp_path / f"router-{tag}.log",
    ).start()


class Changelog:
    """The router's table changelog (JSON values), read as it grows: what a restarted router recovers."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            kafka.client_config()
            | {"group.id": f"read-{topic}", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        )
        self.consumer.subscribe([topic])
        self.latest: dict[bytes, Any] = {}

    def read(self) -> dict[bytes, Any]:
        for message in self.consumer.consume(500, 0.5):
            if not message.error() and message.key() is not None:
                self.latest[message.key()] = None if message.value() is None else json.loads(message.value())
        return self.latest

    def close(self) -> None:
        self.consumer.close()


def open_incidents(changelog: Changelog, camera: str) -> list[str]:
    """Alert ids of the camera's open incidents in the newest changelog entry for it."""
    states = [v for k, v in changelog.read().items() if camera.encode() in k and v]
    return [i["alert_id"] for s in states[-1:] for i in s["pipeline"]["incidents"]["open"].values()]


def test_killed_router_resumes_incident_without_second_new_and_ends_it(
    kafka_settings: KafkaSettings, publish_cameras, unique: str, tmp_path: Path
) -> None:
    camera = f"restart-{unique}"
    publish_cameras(
        [
            CameraEntry(
                camera_id=camera,
                stream_url="file:///dev/null",
                tags=["crime-hotspot"],
                zones=[{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "rules": [{"type": "intrusion"}]}],
            )
        ]
    )
    producer = make_producer(kafka_settings, "test")
    partition, offset = produce_evidence_frame(producer, camera)
    sequence = iter(range(10_000))
    sent: list[tuple[int, int]] = []  # (partition, offset) of each detections record

    def send(objects: list[dict], clock_ahead_s: float = 0.0) -> None:
        capture = time.time_ns() // 1000 + int(clock_ahead_s * 1e6)
        producer.produce(
            DETECTIONS,
            key=camera,
            value=SERDE.serialize(
                DETECTIONS,
                "Detections",
                detections_record(camera, (partition, offset), next(sequence), capture, objects),
            ),
            on_delivery=lambda _e, m: sent.append((m.partition(), m.offset())),
        )
        producer.flush(10)

    app_id = f"router-{unique}"
    probe = Consumer(kafka_settings.client_config() | {"group.id": app_id})  # reads commits, never joins

    def committed_all_sent() -> bool:
        """The router's group committed past the last detections record sent (it processed them all)."""
        last_partition, last_offset = sent[-1]
        (committed,) = probe.committed([TopicPartition(DETECTIONS, last_partition)], timeout=10)
        return committed.offset > last_offset

    alerts = TopicWatcher(kafka_settings, ALERTS, "Alert", SERDE, lambda v: v["camera_id"] == camera)
    letters = TopicWatcher(kafka_settings, DLQ, "DeadLetter", SERDE, keys=[camera.encode()])
    changelog = Changelog(kafka_settings, f"{app_id}-camera-state-changelog")
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
        for _ in range(3):  # the incident goes on
            send([PERSON])
        # Kill only once the open incident is in the changelog and every record sent is committed:
        # the restarted router must resume it, not replay it.
        wait_for(committed_all_sent, 60, "the router to commit the detections it processed")
        wait_for(lambda: open_incidents(changelog, camera) == [alert_id], 60, "the open incident in the changelog")
        assert [a["kind"] for a in alerts.snapshot()] == ["NEW"], "the incident must still be open at the kill"
        first.kill()  # SIGKILL mid-incident: no goodbye, no final commit

        second = router(kafka_settings, app_id, tmp_path, "2")
        person_until(lambda: "recovery complete" in second.log_text(), "the restarted router to recover its table")
        for _ in range(3):  # the person is still there
            send([PERSON])
        wait_for(committed_all_sent, 90, "the restarted router to process the person's frames")
        # Its expiry timer (every 0.5 s) has run meanwhile: the resumed incident is still open, unsplit.
        assert open_incidents(changelog, camera) == [alert_id], (alerts.snapshot(), second.log_text()[-2000:])
        assert [a["kind"] for a in alerts.snapshot()].count("END") == 0
        # The person leaves; the camera's clock runs past the end grace: END.
        wait_for(
            lambda: send([], clock_ahead_s=END_GRACE_S + 1) or any(a["kind"] == "END" for a in alerts.snapshot()),
            60,
            "the END alert",
            interval_s=0.4,
        )
        producer.produce(DETECTIONS, key=camera, value=b"\x00\x00\x00\x00\x63garbage")
        producer.flush(10)
        wait_for(lambda: letters.snapshot(), 30, "the poison detections on the DLQ")
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
        alerts.close()
        letters.close()
        changelog.close()
        probe.close()
    # Every alert of this camera and zone, whatever its id: one incident across the restart.
    mine = [a for a in alerts.snapshot() if a["zone_id"] == "gate"]
    kinds = [a["kind"] for a in mine]
    assert kinds.count("NEW") == 1 and kinds.count("END") == 1 and kinds[-1] == "END", (
        kinds,
        second.log_text()[-2000:],
    )
    assert {a["alert_id"] for a in mine} == {alert_id}, "the restart split the incident"
    assert [a["sequence"] for a in mine] == list(range(len(mine))), "steps lost or repeated across the restart"
    assert "police" in mine[0]["destinations"]
    assert letters.snapshot()[0]["source_topic"] == DETECTIONS
