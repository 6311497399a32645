"""The gate between decoding and publishing: score each analysed frame for motion, keep the camera's
active/idle state, and pass a frame on (JPEG-encoded) while the camera is active, or as a heartbeat of
a still scene at most once every `heartbeat_s`."""

from __future__ import annotations

from concurrent.futures import Executor, Future

import av
from av.video.reformatter import VideoReformatter

from services.frame_sampler.config import FrameSamplerConfig
from services.frame_sampler.jpeg import encode_jpeg
from services.frame_sampler.motion import ActivityTracker, MotionDetector
from services.frame_sampler.outputs import (
    FrameReason,
    PacketFacts,
    SampledFrame,
    SamplerCounters,
    SamplerOutput,
)


class MotionGate:
    """One camera's motion and activity state and its JPEG encoder."""

    def __init__(self, camera_id: str, config: FrameSamplerConfig, jpeg_executor: Executor | None = None) -> None:
        self.camera_id = camera_id
        self.config = config
        self.motion = MotionDetector(config.motion)
        self.activity = ActivityTracker(camera_id, config.motion)
        # JPEG encoding (simplejpeg and swscale release the GIL) may run on an executor while the next
        # packets decode; outputs then carry pending JPEGs until `SamplerOutput.finish()`. The executor
        # must run one job at a time per camera (the reformatter below is reused); one worker thread does.
        self.jpeg_executor = jpeg_executor
        self._jpeg_reformatter = VideoReformatter()
        self._last_emitted_ms: int | None = None

    def analyse(
        self, frame: av.VideoFrame, info: PacketFacts, counters: SamplerCounters, output: SamplerOutput
    ) -> None:
        counters.frames_analysed += 1
        score = self.motion.score(frame, info.capture_time_ms)
        change = self.activity.update(score, info.capture_time_ms, info.sequence)
        if change is not None:
            counters.activity_changes += 1
            output.activity_changes.append(change)
        reason: FrameReason
        if self.activity.state == "active":
            reason = "motion"
        elif (
            self._last_emitted_ms is None
            or info.capture_time_ms - self._last_emitted_ms >= self.config.sampling.heartbeat_s * 1000
        ):
            reason = "heartbeat"
        else:
            return
        if self.jpeg_executor is None:
            jpeg, width, height = encode_jpeg(frame, self.config.jpeg, self._jpeg_reformatter)
        else:
            future: Future[tuple[bytes, int, int]] = self.jpeg_executor.submit(
                encode_jpeg, frame, self.config.jpeg, self._jpeg_reformatter
            )
            output.pending_jpegs.append((len(output.frames), future))
            jpeg, width, height = b"", 0, 0
        output.frames.append(
            SampledFrame(
                camera_id=self.camera_id,
                session_id=info.session_id,
                sequence=info.sequence,
                pts_us=frame.pts,
                capture_time_ms=info.capture_time_ms,
                is_keyframe=info.is_keyframe,
                width=width,
                height=height,
                source_width=frame.width,
                source_height=frame.height,
                jpeg=jpeg,
                motion_score=score,
                reason=reason,
            )
        )
        self._last_emitted_ms = info.capture_time_ms
        counters.frames_emitted += 1
        if reason == "motion":
            counters.motion_frames_emitted += 1
        else:
            counters.heartbeat_frames_emitted += 1
