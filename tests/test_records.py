"""Typed records against the shipped Avro contracts: each one survives the wire unchanged, and owns its
unit (µs on the wire, ms in the cores) and enum-case conversions."""

from __future__ import annotations

import pytest

from libs.records import (
    Box,
    CameraActivity,
    DetectedObject,
    Detections,
    Frame,
    FrameRef,
    Keypoint,
    ModelId,
    VideoPacket,
    ms_to_us,
)
from libs.serde import AvroSerde, shipped_catalog
from libs.topics import CAMERA_ACTIVITY, DETECTIONS, FRAMES, VIDEO_PACKETS

SERDE = AvroSerde(shipped_catalog())
CAPTURE_US = 1_700_000_000_123_456  # sub-millisecond part on purpose: the wire keeps it


def through_the_wire(topic: str, schema: str, value: dict) -> dict:
    return SERDE.deserialize(topic, schema, SERDE.serialize(topic, schema, value))


def test_frame_round_trips_and_converts_units_and_reason() -> None:
    frame = Frame(
        camera_id="gate-1",
        session_id="s1",
        sequence=42,
        capture_time_us=CAPTURE_US,
        pts_us=None,
        source_partition=3,
        source_offset=1234,
        width=640,
        height=360,
        jpeg=b"\xff\xd8jpeg",
        motion_score=0.25,
        reason="heartbeat",
        sampled_at_us=CAPTURE_US + 5,
    )
    wire = through_the_wire(FRAMES, "Frame", frame.to_avro())
    assert wire["reason"] == "HEARTBEAT" and wire["capture_time"] == CAPTURE_US
    assert Frame.from_avro(wire) == frame
    assert frame.capture_time_ms == 1_700_000_000_123


def test_detections_round_trip_with_the_shared_box() -> None:
    person = DetectedObject(0.1, 0.2, 0.3, 0.9, class_id=0, class_name="person", score=0.875)
    detections = Detections(
        camera_id="gate-1",
        frame=FrameRef(FRAMES, 2, 99),
        session_id="s1",
        sequence=7,
        capture_time_us=CAPTURE_US,
        width=768,
        height=576,
        objects=[person],
        model=ModelId("centernet", "1", "ab" * 32),
        inference_ms=12.5,
        detected_at_us=CAPTURE_US + 40_000,
    )
    wire = through_the_wire(DETECTIONS, "Detections", detections.to_avro())
    assert wire["objects"][0]["box"] == pytest.approx({"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.9})
    decoded = Detections.from_avro(wire)
    assert decoded.frame == detections.frame and decoded.capture_time_ms == 1_700_000_000_123
    (got,) = decoded.objects
    assert isinstance(got, Box) and (got.class_name, got.class_id) == ("person", 0)
    # Avro floats are 32-bit: the box comes back within float precision, not bit-identical.
    assert (got.x1, got.y1, got.x2, got.y2, got.score) == pytest.approx((0.1, 0.2, 0.3, 0.9, 0.875), abs=1e-6)


def test_keypoints_travel_with_a_person_and_their_absence_stays_none() -> None:
    points = tuple(Keypoint(0.1 + i * 0.01, 0.2 + i * 0.02, 0.5) for i in range(17))
    person = DetectedObject(0.1, 0.2, 0.3, 0.9, class_id=0, class_name="person", score=0.875, keypoints=points)
    car = DetectedObject(0.5, 0.5, 0.7, 0.6, class_id=2, class_name="car", score=0.6)
    detections = Detections(
        camera_id="gate-1",
        frame=FrameRef(FRAMES, 2, 99),
        session_id="s1",
        sequence=7,
        capture_time_us=CAPTURE_US,
        width=768,
        height=576,
        objects=[person, car],
        model=ModelId("centernet", "1", "ab" * 32),
        inference_ms=12.5,
        detected_at_us=CAPTURE_US + 40_000,
    )
    got_person, got_car = Detections.from_avro(through_the_wire(DETECTIONS, "Detections", detections.to_avro())).objects
    assert got_car.keypoints is None
    assert got_person.keypoints is not None and len(got_person.keypoints) == 17
    assert [v for k in got_person.keypoints for v in (k.x, k.y, k.score)] == pytest.approx(
        [v for k in points for v in (k.x, k.y, k.score)], abs=1e-6
    )


def test_camera_activity_and_video_packet_from_the_wire() -> None:
    activity = CameraActivity(
        "gate-1",
        "active",
        0.015625,
        since_us=ms_to_us(1_700_000_000_000),  # exact in float32
        timestamp_us=CAPTURE_US,
    )
    wire = through_the_wire(CAMERA_ACTIVITY, "CameraActivity", activity.to_avro())
    assert wire["state"] == "ACTIVE" and wire["since"] == 1_700_000_000_000_000
    assert CameraActivity.from_avro(wire) == activity

    packet = through_the_wire(
        VIDEO_PACKETS,
        "VideoPacket",
        {
            "camera_id": "gate-1",
            "session_id": "s1",
            "sequence": 5,
            "capture_time": CAPTURE_US,
            "pts_us": 400_000,
            "dts_us": 300_000,
            "is_keyframe": True,
            "codec": "h264",
            "extradata": b"\x01avcC",
            "data": b"\x00\x00\x01",
        },
    )
    record = VideoPacket.from_avro(packet)
    assert (record.codec, record.extradata, record.pts_us, record.dts_us) == ("h264", b"\x01avcC", 400_000, 300_000)
    assert record.capture_time_ms == 1_700_000_000_123
