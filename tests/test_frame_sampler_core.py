"""Frame-sampler core on real footage: samples/vtest-h264.mp4 (OpenCV's vtest.avi, a campus camera)
demuxed with PyAV into the packet records the ingest service produces.

Still scenes are built from a real decoded frame of that footage, re-encoded as H.264 with per-frame
sensor noise and a slow brightness drift, so "still" means what a real camera sends, not identical bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import simplejpeg
from av.video.stream import VideoStream
from pydantic import ValidationError

from libs.cameras import Sampling
from services.frame_sampler.cameras import CameraMap
from services.frame_sampler.config import FrameSamplerConfig, JpegConfig, MotionConfig
from services.frame_sampler.decoder import CameraDecoder
from services.frame_sampler.jpeg import encode_jpeg
from services.frame_sampler.outputs import (
    ActivityChange,
    EncodedPacket,
    FrameSamplerError,
    SampledFrame,
    SamplerOutput,
)
from services.frame_sampler.selector import NearestTickSelector

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "vtest-h264.mp4"
CAMERA = "campus-gate"
EPOCH_MS = 1_700_000_000_000
SAMPLE_FPS = 10
SAMPLE_KEYFRAME_INTERVAL = 10  # packets; samples/make_samples.py encodes a keyframe every second


# --------------------------------------------------------------------------- building real packet streams


def demux(
    path: Path,
    *,
    session_id: str = "session-1",
    first_sequence: int = 0,
    pts_offset_us: int = 0,
    camera_id: str = CAMERA,
) -> list[EncodedPacket]:
    """Every video packet of a file as EncodedPacket records, like the ingest service emits them."""
    packets: list[EncodedPacket] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        assert time_base is not None
        extradata = stream.codec_context.extradata
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            pts_us = None if packet.pts is None else int(packet.pts * time_base * 1_000_000) + pts_offset_us
            dts_us = None if packet.dts is None else int(packet.dts * time_base * 1_000_000) + pts_offset_us
            packets.append(
                EncodedPacket(
                    camera_id=camera_id,
                    codec=stream.codec_context.name,
                    extradata=extradata,
                    time_base=(time_base.numerator, time_base.denominator),
                    pts_us=pts_us,
                    dts_us=dts_us,
                    is_keyframe=packet.is_keyframe,
                    data=bytes(packet),
                    sequence=first_sequence + len(packets),
                    session_id=session_id,
                    capture_time_ms=EPOCH_MS + (pts_us or 0) // 1000,
                )
            )
    return packets


def decoded_frames(path: Path, indexes: Iterable[int]) -> dict[int, np.ndarray]:
    wanted = set(indexes)
    found: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24")
            if len(found) == len(wanted):
                break
    return found


def encode_clip(
    frames_rgb: Sequence[np.ndarray],
    output: Path,
    *,
    codec: str = "libx264",
    fps: int = SAMPLE_FPS,
    keyframe_interval: int = SAMPLE_KEYFRAME_INTERVAL,
) -> Path:
    """Encode RGB frames into an MP4 with a fixed keyframe interval (no B-frames), like a camera would."""
    height, width = frames_rgb[0].shape[:2]
    options: dict[str, str] = {}
    if codec == "libx264":
        options = {"preset": "veryfast", "crf": "26", "sc_threshold": "0", "bf": "0"}
    with av.open(str(output), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        assert isinstance(stream, VideoStream)
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.codec_context.gop_size = keyframe_interval
        stream.codec_context.max_b_frames = 0
        stream.width, stream.height = width, height
        for index, rgb in enumerate(frames_rgb):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return output


def still_scene(base_rgb: np.ndarray, seconds: float, *, seed: int) -> list[np.ndarray]:
    """A motionless view as a camera delivers it: sensor noise on every frame and a slow brightening."""
    rng = np.random.default_rng(seed)
    frame_count = int(seconds * SAMPLE_FPS)
    frames = []
    for index in range(frame_count):
        drift = 16.0 * index / frame_count  # +16 grey levels over the clip: clouds clearing
        noisy = base_rgb.astype(np.float32) + drift + rng.normal(0.0, 6.0, base_rgb.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return frames


def run(decoder: CameraDecoder, packets: Iterable[EncodedPacket], flush: bool = True) -> SamplerOutput:
    output = SamplerOutput()
    for packet in packets:
        output.extend(decoder.process(packet))
    if flush:
        output.extend(decoder.flush())
    return output


def pts_of(frame: SampledFrame) -> int:
    assert frame.pts_us is not None, f"frame {frame.sequence} has no timestamp"
    return frame.pts_us


def sampler_config(**fields: Any) -> FrameSamplerConfig:
    """FrameSamplerConfig from plain values, as the service reads it from its settings."""
    return FrameSamplerConfig.model_validate(fields)


def emit_everything(**sampling: Any) -> Sampling:
    """A sampling policy under which every analysed frame is emitted (to test decoding, not gating)."""
    return Sampling.model_validate({**sampling, "heartbeat_s": 0.001})


@pytest.fixture(scope="module")
def footage() -> list[EncodedPacket]:
    assert SAMPLE.exists(), f"{SAMPLE} missing: run samples/make_samples.py"
    return demux(SAMPLE)


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s of the campus view with nobody moving (frame 0 of the footage, noisy, slowly brightening)."""
    base = decoded_frames(SAMPLE, [0])[0]
    return encode_clip(still_scene(base, 30.0, seed=1), tmp_path_factory.mktemp("still") / "still.mp4")


@pytest.fixture(scope="module")
def frozen_end_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s still view of the scene exactly as it looks 20 s into the footage (people stopped)."""
    base = decoded_frames(SAMPLE, [199])[199]
    return encode_clip(still_scene(base, 20.0, seed=2), tmp_path_factory.mktemp("frozen") / "frozen.mp4")


# --------------------------------------------------------------------------- motion gating and activity


def test_still_scene_yields_only_heartbeats(still_clip: Path) -> None:
    config = sampler_config(sampling={"heartbeat_s": 10.0})
    decoder = CameraDecoder(CAMERA, config)
    packets = demux(still_clip)
    output = run(decoder, packets)

    assert decoder.counters.frames_analysed == 30  # one keyframe per second
    assert output.activity_changes == []
    assert decoder.activity_state.state == "idle"
    assert [frame.reason for frame in output.frames] == ["heartbeat"] * 3
    assert [frame.capture_time_ms - EPOCH_MS for frame in output.frames] == [0, 10_000, 20_000]
    assert max(frame.motion_score for frame in output.frames) < config.motion.deactivate_score


def test_people_walking_make_the_camera_active_then_idle_when_the_scene_freezes(
    footage: list[EncodedPacket], frozen_end_clip: Path
) -> None:
    walking = footage[:200]  # 20 s of people crossing the campus
    frozen = demux(frozen_end_clip, first_sequence=200, pts_offset_us=20_000_000)
    config = sampler_config(sampling={"heartbeat_s": 5.0}, motion=MotionConfig(idle_hold_s=3.0))
    decoder = CameraDecoder(CAMERA, config)

    walking_output = run(decoder, walking, flush=False)
    assert [change.state for change in walking_output.activity_changes] == ["active"]
    assert decoder.activity_state.state == "active"
    motion_frames = [frame for frame in walking_output.frames if frame.reason == "motion"]
    assert len(motion_frames) >= 15  # of 20 analysed keyframes, the first has no predecessor to compare with
    assert min(frame.motion_score for frame in motion_frames[1:]) > 0  # real movement in every later frame

    frozen_output = run(decoder, frozen)
    changes = frozen_output.activity_changes
    assert [change.state for change in changes] == ["idle"]
    idle_change: ActivityChange = changes[0]
    assert idle_change.previous_state == "active"
    went_idle_after_s = (idle_change.since_ms - EPOCH_MS) / 1000 - 20.0
    assert config.motion.idle_hold_s <= went_idle_after_s <= config.motion.idle_hold_s + 2.0
    assert (decoder.activity_state.state, decoder.activity_state.since_ms) == ("idle", idle_change.since_ms)
    after_idle = [frame for frame in frozen_output.frames if frame.capture_time_ms >= idle_change.since_ms]
    assert after_idle and all(frame.reason == "heartbeat" for frame in after_idle)
    gaps = np.diff([frame.capture_time_ms for frame in after_idle])
    assert all(gap >= 5_000 for gap in gaps)


def test_sampled_frames_are_real_jpegs_of_the_scene(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(
        CAMERA, sampler_config(sampling=emit_everything(), jpeg={"quality": 70, "max_dimension": 384})
    )
    output = run(decoder, footage[:30])
    assert [frame.sequence for frame in output.frames] == [0, 10, 20]
    reference = decoded_frames(SAMPLE, [10])[10]
    frame: SampledFrame = output.frames[1]
    assert (frame.width, frame.height, frame.source_width, frame.source_height) == (384, 288, 768, 576)
    assert frame.pts_us == 1_000_000 and frame.capture_time_ms == EPOCH_MS + 1_000 and frame.is_keyframe
    image = simplejpeg.decode_jpeg(frame.jpeg, colorspace="RGB")
    assert image.shape == (288, 384, 3)
    reference_small = reference.reshape(288, 2, 384, 2, 3).mean(axis=(1, 3))
    # Same picture, and full-range levels (a limited-range mistake shifts the mean by several grey levels).
    assert abs(float(image.mean()) - float(reference_small.mean())) < 3.0
    assert float(np.abs(image.astype(np.float32) - reference_small).mean()) < 8.0


@pytest.fixture(scope="module")
def keyframe() -> av.VideoFrame:
    """A decoded keyframe of the footage: 768x576 limited-range yuv420p, as cameras' H.264 usually is."""
    with av.open(str(SAMPLE)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 10:
                assert frame.format.name == "yuv420p"
                return frame
    raise AssertionError(f"{SAMPLE} has fewer than 11 frames")


@pytest.mark.parametrize(
    ("max_dimension", "full_range_source", "expected_size"),
    [
        (1280, False, (768, 576)),  # native size: one swscale pass to full range
        (400, False, (400, 300)),  # downscaled in the same pass
        (1280, True, (768, 576)),  # full-range 4:2:0 source: encoded from its own planes, no pass
        (400, True, (400, 300)),
    ],
)
def test_jpeg_from_yuv_planes_matches_the_rgb_picture(
    keyframe: av.VideoFrame, max_dimension: int, full_range_source: bool, expected_size: tuple[int, int]
) -> None:
    width, height = expected_size
    # The reference: FFmpeg's own YUV->RGB conversion (and area downscale) of the decoded frame.
    reference = keyframe.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
    source = keyframe.reformat(format="yuvj420p") if full_range_source else keyframe

    jpeg, jpeg_width, jpeg_height = encode_jpeg(source, JpegConfig(quality=80, max_dimension=max_dimension))

    assert (jpeg_width, jpeg_height) == expected_size
    image = simplejpeg.decode_jpeg(jpeg, colorspace="RGB")
    assert image.shape == (height, width, 3)
    difference = image.astype(np.float32) - reference.astype(np.float32)
    # Limited-range levels written into the JPEG unconverted would be ~7.5 grey levels off on average.
    assert float(np.abs(difference).mean()) < 4.0
    assert abs(float(difference.mean())) < 1.5


# --------------------------------------------------------------------------- what gets decoded


def test_keyframe_mode_never_decodes_a_non_key_packet(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything(mode="keyframes")))
    output = run(decoder, footage)
    keyframes = [packet for packet in footage if packet.is_keyframe]
    assert len(keyframes) == 80
    assert decoder.counters.non_key_packets_decoded == 0
    assert decoder.counters.packets_decoded == len(keyframes)
    assert decoder.counters.non_key_packets_skipped == len(footage) - len(keyframes)
    assert [frame.sequence for frame in output.frames] == [packet.sequence for packet in keyframes]


def test_fps_at_or_below_the_keyframe_rate_switches_to_keyframes_only(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything(fps=0.5)))
    output = run(decoder, footage, flush=False)
    assert decoder.keyframes_only
    output.extend(decoder.flush())
    # Only the first GOP is decoded in full: the keyframe interval is unknown until the second keyframe.
    assert decoder.counters.non_key_packets_decoded == SAMPLE_KEYFRAME_INTERVAL - 1
    times_s = [pts_of(frame) / 1e6 for frame in output.frames]
    assert times_s == [float(second) for second in range(0, 80, 2)]


def test_fps_above_the_keyframe_rate_picks_the_frame_nearest_each_tick(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything(fps=3)))
    output = run(decoder, footage, flush=False)
    assert not decoder.keyframes_only
    output.extend(decoder.flush())
    assert decoder.counters.non_key_packets_decoded == len(footage) - 80
    times_us = [pts_of(frame) for frame in output.frames]
    assert len(times_us) == len(set(times_us)) == 239  # ticks 0 .. 79.33 s
    for tick, pts_us in enumerate(times_us):
        assert abs(pts_us - tick * 1_000_000 / 3) <= 50_000  # frames are 100 ms apart: nearest is within 50 ms


# --------------------------------------------------------------------------- broken and changing streams


def test_sequence_gap_resumes_at_the_next_keyframe(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything(fps=10)))
    with_gap = footage[:25] + footage[27:45]  # packets 25 and 26 lost mid-GOP
    output = run(decoder, with_gap)
    assert decoder.counters.sequence_gaps == 1
    assert decoder.counters.packets_skipped_awaiting_keyframe == 3  # 27, 28, 29
    sequences = [frame.sequence for frame in output.frames]
    assert sequences == list(range(25)) + list(range(30, 45))
    assert output.issues == []


def test_new_session_resumes_at_its_first_keyframe(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything(fps=10)))
    reconnected = [
        dataclasses.replace(packet, session_id="session-2", sequence=index)
        for index, packet in enumerate(footage[45:70])  # the new session starts mid-GOP
    ]
    output = run(decoder, footage[:20] + reconnected)
    assert decoder.counters.session_changes == 1
    assert decoder.counters.packets_skipped_awaiting_keyframe == 5  # 45..49 of the footage
    second_session = [frame for frame in output.frames if frame.session_id == "session-2"]
    assert [frame.sequence for frame in second_session] == list(range(5, 25))
    assert second_session[0].is_keyframe


def test_out_of_order_packets_are_dropped(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything(fps=10)))
    output = run(decoder, footage[:12] + [footage[5], footage[11]] + footage[12:20])
    assert decoder.counters.out_of_order_packets == 2
    assert [frame.sequence for frame in output.frames] == list(range(20))


def corrupted(packet: EncodedPacket) -> EncodedPacket:
    damaged = bytearray(packet.data)
    for offset in range(40, len(damaged), 5):  # scramble the slice data, keep the NAL length prefix
        damaged[offset] ^= 0x5A
    return dataclasses.replace(packet, data=bytes(damaged))


def test_corrupt_packet_is_counted_and_decoding_resumes_at_the_next_keyframe(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything(fps=10)))
    damaged_stream = footage[:23] + [corrupted(footage[23])] + footage[24:40]
    output = run(decoder, damaged_stream)
    assert decoder.counters.decode_errors + decoder.counters.corrupt_frames >= 1
    assert [issue.sequence for issue in output.issues] == [23]
    assert output.issues[0].kind in ("decode_error", "corrupt_frame")
    assert "skipping to the next keyframe" in output.issues[0].message
    assert decoder.counters.packets_skipped_awaiting_keyframe == 6  # 24 .. 29
    assert [frame.sequence for frame in output.frames] == list(range(23)) + list(range(30, 40))


def test_corrupt_keyframe_on_the_fast_path(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything()))
    damaged_stream = footage[:20] + [corrupted(footage[20])] + footage[21:50]
    output = run(decoder, damaged_stream)
    assert [issue.sequence for issue in output.issues] == [20]
    assert [frame.sequence for frame in output.frames] == [0, 10, 30, 40]
    assert decoder.counters.non_key_packets_decoded == 0


@pytest.mark.parametrize("second_codec", ["mpeg4", "mjpeg"])
def test_codec_change_mid_stream(footage: list[EncodedPacket], tmp_path: Path, second_codec: str) -> None:
    rgb = decoded_frames(SAMPLE, range(300, 330))
    half_size = [frame[::2, ::2].copy() for _, frame in sorted(rgb.items())]  # 384x288: a re-configured camera
    other = demux(
        encode_clip(half_size, tmp_path / f"{second_codec}.mp4", codec=second_codec),
        first_sequence=30,
        pts_offset_us=3_000_000,
    )
    assert other[0].codec == second_codec
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything()))
    output = run(decoder, footage[:30] + other)
    assert decoder.counters.stream_changes == 1
    assert output.issues == []
    sizes = [(frame.source_width, frame.source_height) for frame in output.frames]
    assert sizes[:3] == [(768, 576)] * 3
    expected_keyframes = sum(1 for packet in other if packet.is_keyframe)
    assert sizes[3:] == [(384, 288)] * expected_keyframes
    assert expected_keyframes == (30 if second_codec == "mjpeg" else 3)


def test_missing_extradata_on_an_avcc_keyframe_is_a_counted_error(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything()))
    stripped = [dataclasses.replace(packet, extradata=None) for packet in footage[:30]]
    output = run(decoder, stripped + footage[30:50])
    assert decoder.counters.missing_extradata_errors == 3
    assert [issue.kind for issue in output.issues] == ["missing_extradata"] * 3
    assert "extradata" in output.issues[0].message and "'campus-gate'" in output.issues[0].message
    # Once the configuration arrives, decoding starts at the next keyframe.
    assert decoder.counters.stream_changes == 1
    assert [frame.sequence for frame in output.frames] == [30, 40]


def test_unknown_codec_is_reported_once_and_does_not_stop_other_cameras(footage: list[EncodedPacket]) -> None:
    # Through the service's own map of cameras: one decoder per camera, created on first sight.
    cameras = CameraMap(sampler_config(sampling=emit_everything()))
    bogus = [dataclasses.replace(packet, camera_id="lobby", codec="no-such-codec") for packet in footage[:20]]
    outputs = [
        cameras.get(packet.camera_id).decoder.process(packet) for packet in bogus[:10] + footage[:20] + bogus[10:]
    ]
    issues = [issue for output in outputs for issue in output.issues]
    assert [issue.kind for issue in issues] == ["unsupported_codec"]
    assert cameras.get("lobby").decoder.counters.unsupported_codec_packets == 20
    frames = [frame for output in outputs for frame in output.frames]
    assert [(frame.camera_id, frame.sequence) for frame in frames] == [(CAMERA, 0), (CAMERA, 10)]
    assert set(cameras.cameras) == {CAMERA, "lobby"}


def test_first_packet_without_timestamps_is_still_sampled(footage: list[EncodedPacket]) -> None:
    # RTSP sources: the first frame may carry no pts (gst-rtsp-server + FFmpeg do this).
    first = dataclasses.replace(footage[0], pts_us=None, dts_us=None)
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything(fps=1)))
    output = run(decoder, [first] + footage[1:40])
    assert decoder.counters.packets_without_timestamp == 1
    # The tick grid starts at the first timestamped frame (0.1 s), so the second sample is the frame
    # nearest 1.1 s. The untimed keyframe cannot start a keyframe-interval measurement, so two GOPs are
    # decoded in full; from the third keyframe on only keyframes are, the nearest to 2.1 s and 3.1 s.
    assert [frame.sequence for frame in output.frames] == [0, 11, 20, 30]
    assert decoder.counters.non_key_packets_decoded == 2 * (SAMPLE_KEYFRAME_INTERVAL - 1)


def test_packet_for_another_camera_is_refused(footage: list[EncodedPacket]) -> None:
    decoder = CameraDecoder("lobby")
    with pytest.raises(FrameSamplerError, match="campus-gate"):
        decoder.process(footage[0])


# --------------------------------------------------------------------------- pure pieces


def test_nearest_tick_selector_picks_nearest_and_tolerates_duplicate_timestamps() -> None:
    selector: NearestTickSelector[str] = NearestTickSelector(period_us=1_000_000)
    chosen: list[str] = []
    # ~3 fps with jitter and a repeated timestamp (seen on RTSP); ticks at 0 s, 1 s, 2 s.
    for pts_us in [0, 330_000, 330_000, 670_000, 960_000, 1_300_000, 1_650_000, 2_100_000, 2_400_000]:
        chosen += selector.offer(pts_us, f"t={pts_us}")
    chosen += selector.flush()
    assert chosen == ["t=0", "t=960000", "t=2100000"]


def test_nearest_tick_selector_skips_ticks_with_no_frames_near() -> None:
    selector: NearestTickSelector[int] = NearestTickSelector(period_us=500_000)
    chosen: list[int] = []
    for pts_us in [0, 100_000, 200_000, 3_000_000, 3_100_000]:  # a 2.8 s hole in the stream
        chosen += selector.offer(pts_us, pts_us)
    chosen += selector.flush()
    assert chosen == [0, 3_000_000]


def test_config_short_forms_and_actionable_errors() -> None:
    assert Sampling.model_validate("keyframes").mode == "keyframes"
    assert Sampling.model_validate({"fps": 2}).fps == 2
    assert Sampling.model_validate("fps:0.5") == Sampling(mode="fps", fps=0.5)
    assert Sampling(mode="keyframes", fps=3).fps is None  # the inventory may carry a rate it does not use
    assert FrameSamplerConfig.model_validate({"sampling": {"fps": 0.5}}).sampling.mode == "fps"
    defaults = FrameSamplerConfig()
    assert (defaults.jpeg.quality, defaults.jpeg.max_dimension, defaults.sampling.mode) == (80, 1280, "keyframes")
    with pytest.raises(ValidationError, match="needs a rate"):
        Sampling(mode="fps")
    with pytest.raises(ValidationError, match="greater than 0"):
        Sampling.model_validate({"fps": 0})
    with pytest.raises(ValidationError, match="'keyframes', 'fps:N' or"):
        Sampling.model_validate("everything")
    with pytest.raises(ValidationError, match="must not exceed activate_score"):
        MotionConfig(activate_score=0.01, deactivate_score=0.02)
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        FrameSamplerConfig.model_validate({"jpeg": {"quality": 101}})


def test_jpegs_encoded_on_an_executor_equal_inline_ones(footage: list[EncodedPacket]) -> None:
    """The service encodes on a worker thread while later packets decode: same frames, same bytes, same order."""
    from concurrent.futures import ThreadPoolExecutor

    config = sampler_config(sampling=emit_everything(), jpeg={"max_dimension": 640})
    inline = run(CameraDecoder(CAMERA, config), footage[:120])
    with ThreadPoolExecutor(1) as executor:
        deferred = run(CameraDecoder(CAMERA, config, executor), footage[:120])
        assert deferred.pending_jpegs and all(frame.jpeg == b"" for frame in deferred.frames)
        deferred.finish()
    assert not deferred.pending_jpegs
    assert [f.sequence for f in deferred.frames] == [f.sequence for f in inline.frames] == list(range(0, 120, 10))
    assert [(f.jpeg, f.width, f.height) for f in deferred.frames] == [
        (f.jpeg, f.width, f.height) for f in inline.frames
    ]
