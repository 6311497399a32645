"""The frame-sampler service on the real broker, fed with real footage demuxed by the ingest core."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from cctv.devstack.services import ServiceProcess
from libs.cameras import CameraEntry, Sampling
from libs.kafka import create_topics, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import CAMERA_ACTIVITY, DLQ, FRAMES, VIDEO_PACKETS, pipeline_topics
from services.ingest.core import CameraPuller, PacketRecord, PullSettings
from tests.kafka_helpers import GRACEFUL_STOP_S, TopicWatcher, wait_for

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-h264.mp4"
SERDE = AvroSerde(shipped_catalog())


def demux_file(camera_id: str) -> list[PacketRecord]:
    """One pass over the real sample, exactly as ingest would publish it."""
    packets: list[PacketRecord] = []
    done = []
    entry = CameraEntry(camera_id=camera_id, stream_url=f"file://{SAMPLE}", realtime=False)
    puller = CameraPuller(entry, packets.append, lambda s: done.append(s.state), PullSettings())
    puller.run()  # a non-looping file camera returns at the end of the file
    assert done[-1] == "STOPPED" and len(packets) == 795
    return packets


def sampler(name: str, kafka: KafkaSettings, group: str, tmp_path: Path) -> ServiceProcess:
    return ServiceProcess("frame-sampler", {
        "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "CCTV_HTTP__PORT": "0",
        "CCTV_GROUP_ID": group, "CCTV_INSTANCE_ID": name, "CCTV_LOG__FORMAT": "text",
    }, tmp_path / f"{name}.log").start()


def packet_at(kafka: KafkaSettings, partition: int, offset: int) -> dict:
    consumer = Consumer(kafka.client_config() | {"group.id": "fetch-one", "enable.auto.commit": False})
    consumer.assign([TopicPartition(VIDEO_PACKETS, partition, offset)])
    try:
        message = wait_for(lambda: consumer.poll(0.5), 20, "the source packet")
        return SERDE.deserialize(VIDEO_PACKETS, "VideoPacket", message.value())
    finally:
        consumer.close()


def test_sampler_service_motion_frames_activity_dlq_and_rebalance(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path, publish_cameras
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    camera = f"walk-{unique}"
    publish_cameras([CameraEntry(camera_id=camera, stream_url=f"file://{SAMPLE}",
                                                sampling=Sampling(mode="keyframes", heartbeat_s=5))])
    packets = demux_file(camera)
    group = f"cctv-frame-sampler-{unique}"
    frames = TopicWatcher(kafka_settings, FRAMES, "Frame", SERDE, lambda v: v["camera_id"] == camera)
    activity = TopicWatcher(kafka_settings, CAMERA_ACTIVITY, "CameraActivity", SERDE, lambda v: v["camera_id"] == camera)
    letters = TopicWatcher(kafka_settings, DLQ, "DeadLetter", SERDE, keys=[camera.encode()])
    first = sampler(f"s1-{unique}", kafka_settings, group, tmp_path)
    second = None
    producer = make_producer(kafka_settings, "test")
    try:
        half = 400
        for packet in packets[:half]:
            producer.produce(VIDEO_PACKETS, key=camera, value=SERDE.serialize(VIDEO_PACKETS, "VideoPacket", packet.as_record()))
        producer.produce(VIDEO_PACKETS, key=camera, value=b"\x00\x00\x00\x00\x01 not a packet")
        producer.flush(30)
        wait_for(lambda: len(frames.snapshot()) >= 20, 90, "frames from the first half of the clip")
        wait_for(lambda: letters.snapshot(), 30, "the poison record on the DLQ")
        assert letters.snapshot()[0]["source_topic"] == VIDEO_PACKETS
        assert letters.snapshot()[0]["value"] == b"\x00\x00\x00\x00\x01 not a packet"

        # A second replica joins mid-stream: partitions move, decoders restart at the next keyframe.
        second = sampler(f"s2-{unique}", kafka_settings, group, tmp_path)
        wait_for(lambda: "assigned" in second.log_text(), 60, "the second replica to join")
        for packet in packets[half:]:
            producer.produce(VIDEO_PACKETS, key=camera, value=SERDE.serialize(VIDEO_PACKETS, "VideoPacket", packet.as_record()))
        producer.flush(30)
        wait_for(lambda: max(f["sequence"] for f in frames.snapshot()) >= 700, 90, "frames from the second half")
        assert first.alive and second.alive
    finally:
        for process in (first, second):
            if process is not None:
                process.stop(timeout_s=GRACEFUL_STOP_S)
        for watcher in (frames, activity, letters):
            watcher.close()
    assert first.process.returncode == 0, first.log_text()[-2000:]

    got = frames.snapshot()
    # Keyframe mode: one frame per keyframe at most, each pointing at its source keyframe packet.
    assert all(f["reason"] in ("MOTION", "HEARTBEAT") for f in got)
    assert sum(f["reason"] == "MOTION" for f in got) >= 20, "people walk through the whole clip"
    sample = [f for f in got if f["reason"] == "MOTION"][len(got) // 3]
    source = packet_at(kafka_settings, sample["source_partition"], sample["source_offset"])
    assert source["camera_id"] == camera and source["sequence"] == sample["sequence"] and source["is_keyframe"]
    assert sample["jpeg"][:2] == b"\xff\xd8" and (sample["width"], sample["height"]) == (768, 576)
    assert 0 < sample["motion_score"] <= 1
    assert any(a["state"] == "ACTIVE" for a in activity.snapshot())
