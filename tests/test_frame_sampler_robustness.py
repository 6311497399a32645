"""Frame-sampler core against what real cameras and a real cluster throw at it: the lights switch (a
whole-picture tone change is not motion), and a replica takes a camera over in the middle of a GOP
(packets before the next keyframe do not even name their codec)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from services.frame_sampler.decoder import CameraDecoder
from services.frame_sampler.outputs import EncodedPacket
from tests.test_frame_sampler_core import (
    CAMERA,
    EPOCH_MS,
    SAMPLE,
    SAMPLE_FPS,
    decoded_frames,
    demux,
    emit_everything,
    encode_clip,
    run,
    sampler_config,
)

LIGHT_CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "lights-on": lambda rgb: rgb + 50.0,  # a street lamp switching on: every pixel brighter
    "gain-up": lambda rgb: rgb * 1.4,  # auto-exposure jump: bright parts gain most, some saturate
    "dusk-gain-down": lambda rgb: rgb * 0.6,
    "gamma": lambda rgb: 255.0 * (rgb / 255.0) ** 0.7,  # day/night profile switch
}


@pytest.fixture(scope="module")
def walking_rgb() -> list[np.ndarray]:
    """The first 5 s of the footage (people walk from the first frame), decoded to RGB."""
    frames = decoded_frames(SAMPLE, range(50))
    return [frames[index] for index in range(50)]


def lit(frames: list[np.ndarray], change: Callable[[np.ndarray], np.ndarray], seed: int) -> list[np.ndarray]:
    """The frames under another light, with a camera's sensor noise (seeded: reproducible)."""
    rng = np.random.default_rng(seed)
    return [
        np.clip(change(f.astype(np.float32)) + 6.0 * rng.standard_normal(f.shape, dtype=np.float32), 0, 255).astype(
            np.uint8
        )
        for f in frames
    ]


@pytest.mark.parametrize("change", sorted(LIGHT_CHANGES))
def test_sudden_light_change_does_not_activate_but_people_after_it_do(
    change: str, walking_rgb: list[np.ndarray], tmp_path: Path
) -> None:
    """3 s of the empty first frame, the light changes, 3 s more of it, then people walk under the new
    light: the camera stays idle through the change and becomes active only once people move."""
    still = walking_rgb[0]
    frames = (
        lit([still] * 30, lambda rgb: rgb, seed=1)
        + lit([still] * 30, LIGHT_CHANGES[change], seed=2)
        + lit(walking_rgb, LIGHT_CHANGES[change], seed=3)
    )
    packets = demux(encode_clip(frames, tmp_path / f"{change}.mp4"))
    decoder = CameraDecoder(CAMERA, sampler_config(sampling={"heartbeat_s": 5.0}))
    output = run(decoder, packets)

    changes = [(c.state, (c.since_ms - EPOCH_MS) / 1000) for c in output.activity_changes]
    assert changes and changes[0][0] == "active", changes
    assert changes[0][1] >= 6.0, f"{change} activated the camera before anyone moved: {changes}"
    light_frames = [f for f in output.frames if 3_000 <= f.capture_time_ms - EPOCH_MS < 6_000]
    assert all(f.reason == "heartbeat" for f in light_frames), [(f.reason, f.motion_score) for f in light_frames]
    moving = [f for f in output.frames if f.capture_time_ms - EPOCH_MS >= 6_000 and f.reason == "motion"]
    assert len(moving) >= 3, "people walking under the new light are still seen"


@pytest.fixture(scope="module")
def footage() -> list[EncodedPacket]:
    return demux(SAMPLE)


def test_camera_taken_over_mid_gop_starts_at_the_next_keyframe_without_an_issue(footage: list[EncodedPacket]) -> None:
    """After a rebalance the new owner's first packets are mid-GOP, and only keyframes carry the codec
    (the service learns it from the camera's last keyframe, which the old owner saw): no false
    'unsupported codec' alarm, no frame before the keyframe, frames from the keyframe on."""
    handover = 405
    next_keyframe = next(p.sequence for p in footage[handover:] if p.is_keyframe)
    assert next_keyframe > handover
    as_the_service_sees_them = [
        dataclasses.replace(p, codec="", extradata=None) if p.sequence < next_keyframe else p
        for p in footage[handover : handover + 60]
    ]
    decoder = CameraDecoder(CAMERA, sampler_config(sampling=emit_everything(fps=2)))
    output = run(decoder, as_the_service_sees_them)

    assert output.issues == [], output.issues
    sequences = [f.sequence for f in output.frames]
    assert sequences and next_keyframe <= sequences[0] < next_keyframe + SAMPLE_FPS // 2 + 1, sequences
    assert decoder.counters.packets_skipped_awaiting_keyframe == next_keyframe - handover
