"""Motion gating: the fraction of pixels that moved on a small grey copy of each analysed frame, and the
camera's active/idle state with hysteresis."""

from __future__ import annotations

import math

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from services.frame_sampler.config import MotionConfig
from services.frame_sampler.outputs import (
    ActivityChange,
    ActivityState,
    ActivityStateName,
)


def _grid_median(difference: np.ndarray) -> np.float32:
    """Median of every third pixel both ways: a cheap estimate of the frame-wide brightness shift.

    Same value as np.median of that grid, without np.median's per-call overhead (it runs twice a frame).
    """
    sample = difference[::3, ::3].ravel()
    middle = sample.size // 2
    if sample.size % 2:
        return np.partition(sample, middle)[middle]
    ordered = np.partition(sample, (middle - 1, middle))
    return (ordered[middle - 1] + ordered[middle]) / np.float32(2)


def _deciles(gray: np.ndarray) -> np.ndarray:
    """Grey-level deciles of a frame (every third pixel both ways; nearest rank, by partition: ~20 µs)."""
    sample = gray[::3, ::3].ravel()
    ranks = (np.arange(1, 10) * (sample.size - 1)) // 10
    return np.partition(sample, ranks)[ranks]


def _changed_beyond(difference: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels whose change, less the frame-wide shift, exceeds the threshold (works in place on `difference`)."""
    difference -= _grid_median(difference)
    np.abs(difference, out=difference)
    return difference > threshold


class MotionDetector:
    """Fraction of pixels that moved, on a small grey copy of the frame (luma only, no RGB conversion).

    A pixel counts as moving when it differs by more than `pixel_threshold` both from a running-average
    background and from the previous analysed frame, after removing the frame-wide median change (so
    exposure steps and slow light changes do not count), and when at least two of its four neighbours
    moved too (so isolated noise speckles do not count).
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._previous_deciles: np.ndarray | None = None
        self._previous_time_ms: int | None = None
        # A reformatter keeps its swscale context between frames of the same size (set-up costs ~2 ms).
        self._reformatter = VideoReformatter()

    def reset(self) -> None:
        self._background = None
        self._previous = None
        self._previous_deciles = None
        self._previous_time_ms = None

    def small_gray(self, frame: av.VideoFrame) -> np.ndarray:
        width = self.config.analysis_width
        height = max(2, round(width * frame.height / frame.width / 2) * 2)
        # swscale reads only the luma plane for a grey target; AREA averages away sensor noise.
        return self._reformatter.reformat(
            frame, width=width, height=height, format="gray", interpolation="AREA", threads=1
        ).to_ndarray()

    def score(self, frame: av.VideoFrame, time_ms: int) -> float:
        current = self.small_gray(frame).astype(np.float32)
        deciles, previous_deciles = _deciles(current), self._previous_deciles
        self._previous_deciles = deciles
        if (
            self._background is None
            or self._previous is None
            or self._background.shape != current.shape
            or previous_deciles is None
            or float(np.median(np.abs(deciles - previous_deciles))) > self.config.pixel_threshold
        ):
            # First frame, or the whole picture changed tone at once (lights switched, IR mode, exposure
            # jump: every decile moves, bright parts more than dark ones, some saturate; a moving person
            # moves few). That is the light, not motion: start the models afresh from this frame.
            self._background = current
            self._previous = current
            self._previous_time_ms = time_ms
            return 0.0
        threshold = float(self.config.pixel_threshold)
        moving = _changed_beyond(current - self._background, threshold)
        moving &= _changed_beyond(current - self._previous, threshold)
        moving_neighbours = (
            moving[:-2, 1:-1].view(np.uint8)
            + moving[2:, 1:-1].view(np.uint8)
            + moving[1:-1, :-2].view(np.uint8)
            + moving[1:-1, 2:].view(np.uint8)
        )
        solid = moving[1:-1, 1:-1] & (moving_neighbours >= 2)
        score = float(np.count_nonzero(solid)) / solid.size
        elapsed_s = max(0.0, (time_ms - (self._previous_time_ms or time_ms)) / 1000.0)
        learning_rate = 1.0 - math.exp(-elapsed_s / self.config.background_time_constant_s)
        self._background += learning_rate * (current - self._background)
        self._previous = current
        self._previous_time_ms = time_ms
        return score


class ActivityTracker:
    """Active/idle with hysteresis: active at once above activate_score, idle after idle_hold_s below
    deactivate_score."""

    def __init__(self, camera_id: str, config: MotionConfig) -> None:
        self.camera_id = camera_id
        self.config = config
        self.state: ActivityStateName = "idle"
        self.score = 0.0
        self.since_ms: int | None = None
        self._last_busy_ms: int | None = None

    def snapshot(self) -> ActivityState:
        return ActivityState(state=self.state, score=self.score, since_ms=self.since_ms)

    def update(self, score: float, time_ms: int, sequence: int) -> ActivityChange | None:
        self.score = score
        if self.since_ms is None:
            self.since_ms = time_ms
        if self.state == "idle":
            if score >= self.config.activate_score and score > 0:
                self._last_busy_ms = time_ms
                return self._change_to("active", time_ms, sequence)
            return None
        if score >= self.config.deactivate_score:
            self._last_busy_ms = time_ms
            return None
        quiet_for_ms = time_ms - (self._last_busy_ms if self._last_busy_ms is not None else time_ms)
        if quiet_for_ms >= self.config.idle_hold_s * 1000:
            return self._change_to("idle", time_ms, sequence)
        return None

    def _change_to(self, state: ActivityStateName, time_ms: int, sequence: int) -> ActivityChange:
        change = ActivityChange(
            camera_id=self.camera_id,
            state=state,
            previous_state=self.state,
            score=self.score,
            since_ms=time_ms,
            sequence=sequence,
        )
        self.state = state
        self.since_ms = time_ms
        return change
