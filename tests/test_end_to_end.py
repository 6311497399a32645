"""The sample footage through all four services on the real broker and registry; alerts are read the
way a downstream team would: a plain confluent-kafka consumer with the registry's Avro deserializer,
importing nothing of this project."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from cctv.devstack.services import PIPELINE_SERVICES
from libs.settings import KafkaSettings
from tests.kafka_helpers import GRACEFUL_STOP_S
from tests.pipeline_helpers import ROAD, campus_camera, service_env, start_pipeline

FACADE = [[0.42, 0.02], [0.75, 0.02], [0.75, 0.14], [0.42, 0.14]]  # building wall: nobody walks there


def test_sample_footage_raises_routed_alerts_end_to_end(
    kafka_settings: KafkaSettings, schema_registry, publish_cameras, unique: str, tmp_path: Path
) -> None:
    camera = f"e2e-{unique}"
    publish_cameras(
        [
            campus_camera(
                camera,
                "E2E campus road",
                zones=[
                    {"name": "road", "polygon": ROAD, "rules": [{"type": "intrusion"}]},
                    {"name": "facade", "polygon": FACADE, "rules": [{"type": "intrusion"}]},
                ],
            )
        ]
    )

    # A downstream team's consumer: plain client, registry deserializer, started before the pipeline.
    downstream = Consumer(
        {
            "bootstrap.servers": kafka_settings.bootstrap_servers,
            "group.id": f"police-{unique}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        }
    )
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": schema_registry.url}))
    main_topic, police_topic = "cctv.alerts.v1", "cctv.alerts.police.v1"
    assignment = []
    for topic in (main_topic, police_topic):
        for partition in downstream.list_topics(topic, timeout=10).topics[topic].partitions:
            high = downstream.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            assignment.append(TopicPartition(topic, partition, high))
    downstream.assign(assignment)

    services = start_pipeline(service_env(kafka_settings.bootstrap_servers, schema_registry.url), unique, tmp_path)
    started = time.monotonic()
    received: dict[str, list[dict]] = {main_topic: [], police_topic: []}
    receive_times: list[float] = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            message = downstream.poll(0.5)
            if message is None or message.error():
                for service in services:
                    assert service.alive, f"{service.name} died:\n{service.log_text()[-3000:]}"
                road_alerts = [a for a in received[main_topic] if a["zone_name"] == "road"]
                if road_alerts and received[police_topic] and time.monotonic() - started > 20:
                    break
                continue
            alert = deserialize(message.value(), SerializationContext(message.topic(), MessageField.VALUE))
            if alert["camera_id"] == camera:
                received[message.topic()].append(alert)
                receive_times.append(time.time())
        # What an operator runs meanwhile: the status overview and the alert tail with evidence saved.
        cli_env = os.environ | {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "CCTV_REGISTRY__URL": schema_registry.url,
            "COLUMNS": "250",
        }
        status = subprocess.run(
            [sys.executable, "-m", "cctv.cli", "status", "--window", "1"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        tail = subprocess.run(
            [
                sys.executable,
                "-m",
                "cctv.cli",
                "alerts",
                "tail",
                "--destination",
                "police",
                "--from-beginning",
                "--idle-exit",
                "5",
                "--snapshots",
                str(tmp_path / "evidence"),
            ],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            input="",
        )
    finally:
        downstream.close()
        codes = {service.name: service.stop(timeout_s=GRACEFUL_STOP_S) for service in services}
    alerts = received[main_topic]
    assert alerts, "no alert within 150 s; logs:\n" + "\n".join(s.log_text()[-1500:] for s in services)
    first_after = (receive_times[0] - time.time()) + (time.monotonic() - started)
    assert codes == dict.fromkeys(PIPELINE_SERVICES, 0), codes  # SIGTERM: clean shutdown everywhere

    first = alerts[0]
    assert first["kind"] == "NEW" and first["event_type"] == "intrusion" and first["zone_name"] == "road"
    assert first["camera_name"] == "E2E campus road" and first["tags"] == ["crime-hotspot"]
    assert first["objects"] and all(o["class_name"] == "person" for o in first["objects"])
    assert first["snapshot_jpeg"][:2] == b"\xff\xd8" and len(first["snapshot_jpeg"]) <= 200_000
    assert first["frame"]["topic"] == "cctv.frames.v1"
    assert uuid.UUID(first["alert_id"])
    assert not [a for a in alerts if a["zone_name"] == "facade"], "nobody walks on the facade"
    # One alert per incident: a single NEW per alert id, the same id on the routed copy.
    news = [a["alert_id"] for a in alerts if a["kind"] == "NEW"]
    assert len(news) == len(set(news))
    assert "police" in first["destinations"]
    assert first["alert_id"] in {a["alert_id"] for a in received[police_topic]}

    # The registry deserializer gives timestamps as datetimes, as any downstream consumer sees them.
    assert status.returncode == 0, status.stderr
    camera_row = next(line for line in status.stdout.splitlines() if camera in line)
    assert "ONLINE" in camera_row and "ACTIVE" in camera_row, status.stdout
    assert "alert-router" in status.stdout and "detector" in status.stdout
    assert tail.returncode == 0, tail.stderr
    assert first["alert_id"][:8] in tail.stdout
    assert (tmp_path / "evidence" / f"{first['alert_id']}-new-0.jpg").read_bytes()[:2] == b"\xff\xd8"

    latencies = [(a["produced_at"] - a["detected_at"]).total_seconds() for a in alerts]
    print(
        f"\nfirst alert {first_after:.1f} s after the services started; "
        f"capture->alert latency p50 {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s "
        f"over {len(alerts)} alerts"
    )
    assert first_after < 120
