"""The alert-router service on the real broker, for what happens between detections: a camera that goes
silent has its incident ended by the router's timer, an alert whose evidence frame has aged out of the
frames topic is still sent (without a snapshot), and a camera rejected for an invalid zone is skipped
while the others go on."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

from confluent_kafka import TopicPartition

from cctv.devstack.services import ServiceProcess
from libs.cameras import CameraEntry
from libs.kafka import make_admin, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import ALERTS, DETECTIONS, FRAMES
from tests.kafka_helpers import GRACEFUL_STOP_S, TopicWatcher, free_port, wait_for
from tests.pipeline_helpers import service_env
from tests.test_alert_router_service import PERSON, detections_record, produce_evidence_frame

SERDE = AvroSerde(shipped_catalog())
END_GRACE_S = 3.0
WHOLE_VIEW = [[0, 0], [1, 0], [1, 1], [0, 1]]


def metric(port: int, name: str, label: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}{{[^}}]*{label}[^}}]*}} (\S+)$", text, re.MULTILINE))


def test_silent_camera_ended_by_timer_aged_out_evidence_and_invalid_zone_skipped(
    kafka_settings: KafkaSettings, publish_cameras, unique: str, tmp_path: Path
) -> None:
    silent, invalid = f"silent-{unique}", f"badzone-{unique}"
    publish_cameras(
        [
            CameraEntry(
                camera_id=silent,
                stream_url="file:///dev/null",
                tags=["crime-hotspot"],
                zones=[{"name": "gate", "polygon": WHOLE_VIEW, "rules": [{"type": "intrusion"}]}],
            ),
            # Two points are no area: the router rejects this camera (the CLI would have refused it).
            CameraEntry(
                camera_id=invalid,
                stream_url="file:///dev/null",
                zones=[{"name": "lawn", "polygon": [[0.1, 0.1], [0.9, 0.9]], "rules": [{"type": "intrusion"}]}],
            ),
        ]
    )
    producer = make_producer(kafka_settings, "test")
    # The evidence frame, then aged out: the frames topic is cut past it, as retention would.
    frame_partition, frame_offset = produce_evidence_frame(producer, silent)
    admin = make_admin(kafka_settings)  # kept referenced until its future is done
    (cut,) = admin.delete_records([TopicPartition(FRAMES, frame_partition, frame_offset + 1)]).values()
    assert cut.result(timeout=30).low_watermark == frame_offset + 1

    sequence = iter(range(10_000))
    last_capture_us: dict[str, int] = {}

    def send(camera: str, objects: list[dict]) -> None:
        last_capture_us[camera] = time.time_ns() // 1000
        producer.produce(
            DETECTIONS,
            key=camera,
            value=SERDE.serialize(
                DETECTIONS,
                "Detections",
                detections_record(
                    camera, (frame_partition, frame_offset), next(sequence), last_capture_us[camera], objects
                ),
            ),
        )
        producer.flush(10)

    alerts = TopicWatcher(kafka_settings, ALERTS, "Alert", SERDE, lambda v: v["camera_id"] in (silent, invalid))
    port = free_port()
    router = ServiceProcess(
        "alert-router",
        service_env(kafka_settings.bootstrap_servers, http_port=port, group=f"router-{unique}")
        | {
            "CCTV_DATA_DIR": str(tmp_path / "faust"),
            "CCTV_INCIDENTS__END_GRACE_S": str(END_GRACE_S),
            "CCTV_EXPIRE_INTERVAL_S": "0.5",
            # Every camera of the test goes quiet at once, so the whole input partition is silent: the
            # timer's clock follows the wall clock only after this allowance (production: 120 s). Not
            # shorter: a router that reads nothing for allowance + grace (a loaded CI machine stalled it
            # > 6 s once) rightly lets the wall clock run and ends the incident before its last frames.
            "CCTV_EXPIRE_STALL_ALLOWANCE_S": "10",
        },
        tmp_path / "router.log",
    ).start()
    try:

        def both_until(condition, what: str) -> None:
            def step() -> bool:
                send(invalid, [PERSON])
                send(silent, [PERSON])
                return condition()

            wait_for(step, 120, what, interval_s=0.4)

        both_until(lambda: any(a["kind"] == "NEW" for a in alerts.snapshot()), "the NEW alert of the valid camera")
        # The camera goes silent: no frames at all, so only the router's timer can end the incident.
        silent_since_us = last_capture_us[silent]
        end = wait_for(lambda: [a for a in alerts.snapshot() if a["kind"] == "END"], 60, "the timer's END alert")[0]
        wait_for(
            lambda: metric(port, "cctv_alert_router_skipped_total", 'reason="rejected-camera"') > 0,
            30,
            "the invalid camera's detections counted as skipped",
        )
        evidence_missing = metric(port, "cctv_alert_router_evidence_missing_total", 'reason="frame-expired"')
        assert router.alive
    finally:
        assert router.stop(timeout_s=GRACEFUL_STOP_S) == 0, router.log_text()[-2000:]
        alerts.close()

    mine = alerts.snapshot()
    assert [(a["camera_id"], a["kind"]) for a in mine] == [(silent, "NEW"), (silent, "END")], mine
    new = mine[0]
    # The timer honoured the grace: it ended the incident no sooner than END_GRACE_S after the last
    # frame the person was seen in, and dated the end at that frame.
    assert end["alert_id"] == new["alert_id"] and end["ended_at"] <= silent_since_us
    assert end["produced_at"] - silent_since_us >= END_GRACE_S * 1e6
    # The evidence frame was gone: both steps sent anyway, without a snapshot, and counted.
    assert new["snapshot_jpeg"] is None and end["snapshot_jpeg"] is None and "police" in new["destinations"]
    assert evidence_missing >= 2
    log = router.log_text()
    assert f"camera {invalid} rejected" in log and "lawn" in log.split(f"camera {invalid} rejected", 1)[1][:300]
