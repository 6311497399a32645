"""Clip-writer core on the real sample clip: packet selection, segments, remux, manifest, retention,
commit bookkeeping. Pure functions, no Kafka, no S3."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.clip_writer.core import (
    ClipError,
    ClipPolicy,
    Incident,
    Packet,
    check_alert_id,
    covers,
    cut_segments,
    deletion_due,
)
from services.clip_writer.jobs import OpenClips
from services.clip_writer.manifest import (
    StoredSegment,
    build_manifest,
    canonical_bytes,
    load_private_key,
    sha256_hex,
    sign_manifest,
    verify_clip,
)
from services.clip_writer.remux import remux_mp4
from tests.clip_helpers import GOP_US, probe_mp4, sample_packets

T0 = 1_780_000_000_000_000  # µs
S = 1_000_000


@pytest.fixture(scope="module")
def packets() -> list[Packet]:
    return [
        Packet.from_record(0, offset, record.as_record())
        for offset, record in enumerate(sample_packets("cam-core", T0))
    ]


def incident(start_s: float, end_s: float, alert_id: str = "a-1") -> Incident:
    return Incident(alert_id, "cam-core", "intrusion", T0 + int(start_s * S), T0 + int(end_s * S))


def test_clip_covers_pre_roll_incident_post_roll_and_starts_at_a_keyframe(packets: list[Packet]) -> None:
    policy = ClipPolicy()
    event = incident(30.25, 40.5)
    window = event.window(policy)
    assert window == (T0 + int(20.25 * S), T0 + int(50.5 * S))
    segments = cut_segments(packets, window, policy)
    assert len(segments) == 1 and covers(segments, window)
    first = segments[0].packets[0]
    assert first.is_keyframe and first.codec == "h264"
    # The last keyframe at or before the window start: at most one GOP earlier.
    assert window[0] - GOP_US < first.capture_time_us <= window[0]
    assert window[1] <= segments[0].end_us < window[1] + GOP_US

    clip = probe_mp4(remux_mp4(segments[0]))
    assert clip["first_is_keyframe"] and clip["codec"] == "h264" and clip["width"] == 768
    wanted_s = (window[1] - window[0]) / S
    assert wanted_s <= clip["duration_s"] < wanted_s + 2 * GOP_US / S
    assert clip["frames"] == len(segments[0].packets)


def test_long_incident_is_split_into_segments_at_keyframes(packets: list[Packet]) -> None:
    policy = ClipPolicy(segment_s=20)
    segments = cut_segments(packets, incident(15, 60).window(policy), policy)
    assert len(segments) == 4  # 5 s .. 70 s: 20 + 20 + 20 + 5
    for segment in segments:
        assert segment.packets[0].is_keyframe and segment.packets[0].extradata
        assert segment.media_duration_us <= 20 * S + GOP_US
    # Contiguous: no packet lost or repeated between segments.
    offsets = [p.offset for s in segments for p in s.packets]
    assert offsets == list(range(offsets[0], offsets[-1] + 1))
    assert sum(probe_mp4(remux_mp4(s))["frames"] for s in segments) == len(offsets)


def test_remux_is_deterministic_so_rewritten_objects_are_identical(packets: list[Packet]) -> None:
    policy = ClipPolicy()
    segment = cut_segments(packets, incident(5, 8).window(policy), policy)[0]
    assert sha256_hex(remux_mp4(segment)) == sha256_hex(remux_mp4(segment))


def test_a_new_session_starts_a_new_segment_and_its_leading_non_keyframes_are_dropped(packets: list[Packet]) -> None:
    policy = ClipPolicy()
    reconnected = [
        Packet(**{**{k: getattr(p, k) for k in Packet.__slots__}, "session_id": "s2"}) for p in packets[305:400]
    ]  # starts 5 packets into a GOP
    mixed = packets[:300] + reconnected
    segments = cut_segments(mixed, incident(20, 30).window(policy), policy)
    assert [s.header.session_id for s in segments] == [packets[0].session_id, "s2"]
    assert segments[1].packets[0].offset == 310 and segments[1].packets[0].is_keyframe


def test_packets_without_a_keyframe_give_a_clear_error(packets: list[Packet]) -> None:
    with pytest.raises(ClipError, match="no keyframe"):
        cut_segments([p for p in packets if not p.is_keyframe], incident(20, 30).window(ClipPolicy()), ClipPolicy())


def test_alert_ids_that_could_escape_their_prefix_are_refused() -> None:
    assert check_alert_id("f7def71e-01") == "f7def71e-01"
    for bad in ("../x", "a/b", "", "a" * 129):
        with pytest.raises(ValueError):
            check_alert_id(bad)


def test_manifest_signature_and_object_hashes_verify_and_a_changed_byte_is_named(packets: list[Packet]) -> None:
    policy = ClipPolicy()
    event = incident(30, 40)
    segment = cut_segments(packets, event.window(policy), policy)[0]
    data = remux_mp4(segment)
    stored = [StoredSegment("evidence/a-1/segment-000.mp4", sha256_hex(data), len(data), segment)]
    manifest = build_manifest(event, policy, stored, "cctv.video.packets.v1", T0)
    assert manifest["objects"][0]["first_packet"] == {
        "topic": "cctv.video.packets.v1",
        "partition": 0,
        "offset": segment.packets[0].offset,
    }
    assert manifest["retention_until_us"] == event.ended_at_us + 30 * 86_400 * S
    key = Ed25519PrivateKey.generate()
    body = canonical_bytes(manifest)
    signature = sign_manifest(body, key)
    objects = {stored[0].key: data}

    good = verify_clip("a-1", body, signature, key.public_key(), objects.get)
    assert good.ok, good.problems

    objects[stored[0].key] = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
    bad = verify_clip("a-1", body, signature, key.public_key(), objects.get)
    assert len(bad.problems) == 1 and "segment-000.mp4: sha256" in bad.problems[0]

    forged = canonical_bytes(manifest | {"camera_id": "elsewhere"})
    assert any("signature" in p for p in verify_clip("a-1", forged, signature, key.public_key(), {}.get).problems)
    other = Ed25519PrivateKey.generate().public_key()
    assert any("verifying with" in p for p in verify_clip("a-1", body, signature, other, objects.get).problems)


def test_signing_key_from_a_base64_secret() -> None:
    seed = base64.b64encode(bytes(range(32))).decode()
    key = load_private_key(seed + "\n")
    assert json.loads(sign_manifest(b"{}", key))["key_id"].startswith("ed25519:")
    with pytest.raises(ValueError, match="32 bytes"):
        load_private_key(base64.b64encode(b"short").decode())


def test_retention_deletes_expired_clips_unless_held() -> None:
    manifest = {"retention_until_us": T0}
    assert deletion_due(manifest, held=False, now_us=T0)
    assert not deletion_due(manifest, held=True, now_us=T0 + 365 * 86_400 * S)
    assert not deletion_due(manifest, held=False, now_us=T0 - 1)


def test_commits_never_pass_the_first_alert_of_an_open_clip() -> None:
    clips = OpenClips()
    clips.alert(0, 10, "NEW", incident(0, 0, "a"))
    clips.alert(0, 11, "NEW", incident(0, 0, "b"))
    clips.seen(0, 12)
    clips.alert(0, 13, "END", incident(0, 5, "b"))
    assert clips.commit_offsets() == {0: 10}
    clips.finish("a")
    assert clips.commit_offsets() == {0: 11}
    clips.finish("b")
    assert clips.commit_offsets() == {0: 14}
    assert clips.ended_count() == 0


def test_an_open_incident_waits_for_segment_checks_but_its_end_makes_the_clip_due() -> None:
    policy = ClipPolicy(post_roll_s=10, settle_s=1)
    clips = OpenClips()
    job = clips.alert(0, 5, "NEW", incident(0, 0, "c"))
    job.retry_at_us = T0 + 3600 * S  # next segment check far away
    assert not job.due(policy, T0 + 100 * S)
    clips.alert(0, 6, "END", incident(0, 20, "c"))
    assert not job.due(policy, T0 + 30 * S)  # post-roll not over yet
    assert job.due(policy, T0 + 31 * S)


def test_the_snapshot_frame_is_recovered_from_the_clip(packets: list[Packet]) -> None:
    import io

    from PIL import Image

    from services.clip_writer.remux import frame_jpeg

    policy = ClipPolicy()
    segment = cut_segments(packets, incident(30, 40).window(policy), policy)[0]
    mp4 = remux_mp4(segment)
    detected_us = T0 + int(33.3 * S)
    jpeg = frame_jpeg(mp4, (detected_us - segment.start_us) / S)
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.size == (768, 576)
    # Not just any frame: a different moment gives a different picture (people walk in the sample).
    assert frame_jpeg(mp4, 0.0) != jpeg
