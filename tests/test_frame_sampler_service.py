"""The frame-sampler service on the real broker, fed with real footage demuxed by the ingest core."""

from __future__ import annotations

import itertools
import re
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from cctv.devstack.services import ServiceProcess
from libs.cameras import CameraEntry, Sampling
from libs.kafka import create_topics, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import CAMERA_ACTIVITY, DLQ, FRAMES, VIDEO_PACKETS, pipeline_topics
from services.ingest.core import CameraPuller, PacketRecord, PullSettings
from tests.kafka_helpers import GRACEFUL_STOP_S, TopicWatcher, free_port, wait_for

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


def sampler(name: str, kafka: KafkaSettings, group: str, tmp_path: Path, port: int = 0) -> ServiceProcess:
    return ServiceProcess(
        "frame-sampler",
        {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "CCTV_HTTP__PORT": str(port),
            "CCTV_GROUP_ID": group,
            "CCTV_INSTANCE_ID": name,
            "CCTV_LOG__FORMAT": "text",
        },
        tmp_path / f"{name}.log",
    ).start()


def packet_at(kafka: KafkaSettings, partition: int, offset: int) -> dict:
    consumer = Consumer(kafka.client_config() | {"group.id": "fetch-one", "enable.auto.commit": False})
    consumer.assign([TopicPartition(VIDEO_PACKETS, partition, offset)])
    try:
        message = wait_for(lambda: consumer.poll(0.5), 20, "the source packet")
        return SERDE.deserialize(VIDEO_PACKETS, "VideoPacket", message.value())
    finally:
        consumer.close()


def committed_everything(kafka: KafkaSettings, group: str, partitions: set[int]) -> bool:
    """The group committed up to the end of each partition: every record there was processed."""
    probe = Consumer(kafka.client_config() | {"group.id": group})  # reading commits does not join
    try:
        committed = probe.committed([TopicPartition(VIDEO_PACKETS, p) for p in sorted(partitions)], timeout=10)
        return all(tp.offset == probe.get_watermark_offsets(tp, timeout=10)[1] for tp in committed)
    finally:
        probe.close()


def metric(port: int, name: str, camera: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(v)
        for v in re.findall(rf'^{name}{{[^}}]*camera_id="{re.escape(camera)}"[^}}]*}} (\S+)$', text, re.MULTILINE)
    )


def test_sampler_service_motion_frames_activity_dlq_and_rebalance(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path, publish_cameras
) -> None:
    create_topics(kafka_settings, pipeline_topics())
    camera = f"walk-{unique}"
    # The same footage as a second camera sampled at 2 fps: every packet goes through its decoder, so a
    # replica taking it over mid-GOP must skip to the next keyframe before it can show a frame.
    every = f"walk-fps-{unique}"
    publish_cameras(
        [
            CameraEntry(
                camera_id=camera, stream_url=f"file://{SAMPLE}", sampling=Sampling(mode="keyframes", heartbeat_s=5)
            ),
            CameraEntry(
                camera_id=every, stream_url=f"file://{SAMPLE}", sampling=Sampling(mode="fps", fps=2, heartbeat_s=5)
            ),
        ]
    )
    packets = demux_file(camera)
    keyframes = [p.sequence for p in packets if p.is_keyframe]
    half = next(k for k in keyframes if k >= 400) + 5  # the hand-over falls inside a GOP
    next_keyframe = next(k for k in keyframes if k > half)
    group = f"cctv-frame-sampler-{unique}"
    frames = TopicWatcher(kafka_settings, FRAMES, "Frame", SERDE, lambda v: v["camera_id"] == camera)
    sampled = TopicWatcher(kafka_settings, FRAMES, "Frame", SERDE, lambda v: v["camera_id"] == every)
    activity = TopicWatcher(
        kafka_settings, CAMERA_ACTIVITY, "CameraActivity", SERDE, lambda v: v["camera_id"] == camera
    )
    letters = TopicWatcher(kafka_settings, DLQ, "DeadLetter", SERDE, keys=[camera.encode()])
    first = sampler(f"s1-{unique}", kafka_settings, group, tmp_path)
    second = None
    second_port = free_port()
    producer = make_producer(kafka_settings, "test")
    partitions: set[int] = set()

    def publish(selection: list[PacketRecord]) -> None:
        for packet in selection:
            for camera_id in (camera, every):
                producer.produce(
                    VIDEO_PACKETS,
                    key=camera_id,
                    value=SERDE.serialize(VIDEO_PACKETS, "VideoPacket", packet.as_record() | {"camera_id": camera_id}),
                    on_delivery=lambda _e, m: partitions.add(m.partition()),
                )
        producer.flush(30)

    try:
        publish(packets[:half])
        producer.produce(VIDEO_PACKETS, key=camera, value=b"\x00\x00\x00\x00\x01 not a packet")
        producer.flush(30)
        wait_for(lambda: len(frames.snapshot()) >= 20, 90, "frames from the first half of the clip")
        wait_for(lambda: letters.snapshot(), 30, "the poison record on the DLQ")
        assert letters.snapshot()[0]["source_topic"] == VIDEO_PACKETS
        assert letters.snapshot()[0]["value"] == b"\x00\x00\x00\x00\x01 not a packet"
        wait_for(
            lambda: committed_everything(kafka_settings, group, partitions),
            90,
            "the first replica to process and commit the first half",
        )

        # A second replica joins (partitions move under the cooperative protocol), then the first leaves:
        # every camera is now certain to move to a replica that has never seen it, mid-GOP.
        second = sampler(f"s2-{unique}", kafka_settings, group, tmp_path, second_port)
        wait_for(lambda: "assigned" in second.log_text(), 60, "the second replica to join")
        assert first.stop(timeout_s=GRACEFUL_STOP_S) == 0, first.log_text()[-2000:]
        wait_for(lambda: "(now 12)" in second.log_text(), 60, "the second replica to own every partition")
        publish(packets[half:])
        wait_for(lambda: max(f["sequence"] for f in frames.snapshot()) >= 700, 90, "frames from the second half")
        # Motion-gated at 2 fps, with a heartbeat at least every 5 s (50 packets) when nothing moves.
        wait_for(
            lambda: max(f["sequence"] for f in sampled.snapshot()) >= packets[-1].sequence - 55,
            90,
            "sampled frames to the end of the clip",
        )
        assert metric(second_port, "cctv_sampler_frames_total", every) > 0, "the new owner publishes the frames"
    finally:
        for process in (first, second):
            if process is not None:
                process.stop(timeout_s=GRACEFUL_STOP_S)
        for watcher in (frames, sampled, activity, letters):
            watcher.close()
    assert second.process.returncode == 0, second.log_text()[-2000:]

    # The new owner started decoding at the first keyframe after the hand-over, not at the hand-over.
    taken_over = sorted(f["sequence"] for f in sampled.snapshot() if f["sequence"] >= half)
    assert next_keyframe <= taken_over[0] < next_keyframe + 55, (half, next_keyframe, taken_over[:5])
    assert len(taken_over) == len(set(taken_over)), "frames repeated after the hand-over"
    assert f"camera {every} packet" not in second.log_text(), "the new owner fed its decoder a broken stream"
    # ... and kept sampling to the end of the clip: never more than a heartbeat (5 s, 50 packets) apart,
    # never closer than the 2 fps rate allows (10 packets a second).
    gaps = [b - a for a, b in itertools.pairwise(taken_over)]
    assert gaps and max(gaps) <= 55 and min(gaps) >= 4, gaps

    # Each camera's sampling from the inventory is applied: 2 fps picks frames between keyframes, the
    # keyframes camera never leaves them.
    assert set(taken_over) - set(keyframes), "the 2 fps camera was sampled at keyframes only"
    got = frames.snapshot()
    assert {f["sequence"] for f in got} <= set(keyframes), "the keyframes camera got frames between keyframes"
    # Keyframe mode: one frame per keyframe at most, each pointing at its source keyframe packet.
    assert all(f["reason"] in ("MOTION", "HEARTBEAT") for f in got)
    assert sum(f["reason"] == "MOTION" for f in got) >= 20, "people walk through the whole clip"
    sample = [f for f in got if f["reason"] == "MOTION"][len(got) // 3]
    source = packet_at(kafka_settings, sample["source_partition"], sample["source_offset"])
    assert source["camera_id"] == camera and source["sequence"] == sample["sequence"] and source["is_keyframe"]
    assert sample["jpeg"][:2] == b"\xff\xd8" and (sample["width"], sample["height"]) == (768, 576)
    assert 0 < sample["motion_score"] <= 1
    assert any(a["state"] == "ACTIVE" for a in activity.snapshot())
