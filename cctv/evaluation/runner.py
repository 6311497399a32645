"""Runs one annotated clip through the production cores, offline: demux (as ingest does) -> frame-sampler
decoder (sampling + motion gate + JPEG) -> detector -> alert-router pipeline (tracker, rules, incidents).

No Kafka and no pacing: packets are fed as fast as the cores take them. Capture times are the clip's
presentation times on a fixed day (a Monday noon, UTC), so schedules and replays are deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from services.alert_router.config import CameraConfig, IncidentSettings, TrackerSettings
from services.alert_router.model import (
    AlertEvent,
    AlertKind,
    Det,
    FrameDetections,
    FrameRef,
)
from services.alert_router.pipeline import CameraPipeline
from services.detector.detector import Detector
from services.detector.pose import PoseStage
from services.frame_sampler.config import FrameSamplerConfig
from services.frame_sampler.decoder import CameraDecoder
from services.frame_sampler.outputs import EncodedPacket, SampledFrame

from .annotations import ClipAnnotation
from .scoring import RaisedAlert

# 2026-01-05 12:00:00 UTC, a Monday: capture time of the first frame of every clip.
CLIP_EPOCH_MS = 1_767_614_400_000
EVAL_CAMERA_ID = "eval"
MICROSECOND_TIME_BASE = (1, 1_000_000)


class ClipError(ValueError):
    """A clip cannot be read (no video stream, unreadable container)."""


@dataclass(slots=True)
class ClipRun:
    clip_id: str
    duration_s: float
    wall_s: float
    frames_sampled: int
    detector_ms: float
    alerts: list[RaisedAlert] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)
    decode_issues: int = 0
    # CPU seconds of the process (all its threads) for this clip: on a shared machine wall time depends on
    # the others' load, CPU time much less.
    cpu_s: float = 0.0

    @property
    def realtime_factor(self) -> float:
        return self.duration_s / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def realtime_factor_per_cpu(self) -> float:
        """Clip seconds per CPU second: the factor a machine with one free core per clip would reach."""
        return self.duration_s / self.cpu_s if self.cpu_s > 0 else float("inf")


def _micros(value: int | None, time_base: Fraction) -> int | None:
    return None if value is None else round(value * time_base * 1_000_000)


def demux(path: Path, start_s: float, end_s: float | None) -> Iterator[EncodedPacket]:
    """The file's video packets as ingest publishes them (µs timestamps, header on keyframes), limited to
    [start_s, end_s) of presentation time; capture time = clip epoch + time since start_s."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise ClipError(f"cannot open clip {path}: {error}") from None
    try:
        video = next((s for s in container.streams if s.type == "video"), None)
        if video is None:
            raise ClipError(f"clip {path} has no video stream")
        context = video.codec_context
        time_base = video.time_base or Fraction(1, 90_000)
        extradata = bytes(context.extradata) if context.extradata else None
        first_us: int | None = None
        start_us, end_us = round(start_s * 1e6), None if end_s is None else round(end_s * 1e6)
        for sequence, packet in enumerate(container.demux(video)):
            if packet.size == 0:
                continue
            pts_us = _micros(packet.pts, time_base)
            if pts_us is None:
                raise ClipError(f"clip {path}: packet {sequence} has no timestamp; remux it (ffmpeg -c copy)")
            if first_us is None:
                first_us = pts_us
            clip_us = pts_us - first_us
            if clip_us < start_us:
                continue
            if end_us is not None and clip_us >= end_us:
                break
            yield EncodedPacket(
                camera_id=EVAL_CAMERA_ID,
                codec=context.name,
                extradata=extradata,
                time_base=MICROSECOND_TIME_BASE,
                pts_us=pts_us,
                dts_us=_micros(packet.dts, time_base),
                is_keyframe=bool(packet.is_keyframe),
                data=bytes(packet),
                sequence=sequence,
                session_id="eval",
                capture_time_ms=CLIP_EPOCH_MS + (clip_us - start_us) // 1000,
            )
    finally:
        container.close()


def _frame_detections(frame: SampledFrame, objects: list, index: int) -> FrameDetections:
    return FrameDetections(
        camera_id=EVAL_CAMERA_ID,
        frame_seq=frame.sequence,
        capture_time_ms=frame.capture_time_ms,
        frame_ref=FrameRef("eval", 0, index),
        width=frame.width,
        height=frame.height,
        detections=[Det.of(o) for o in objects],
    )


def run_clip(
    path: Path,
    annotation: ClipAnnotation,
    detector: Detector,
    pose: PoseStage | None = None,
    sampler: FrameSamplerConfig | None = None,
    tracker: TrackerSettings | None = None,
    incidents: IncidentSettings | None = None,
) -> ClipRun:
    """All alerts the production cores raise on one clip (clip times in seconds from the excerpt start)."""
    camera = CameraConfig.model_validate(
        {"camera_id": EVAL_CAMERA_ID, "tags": annotation.tags, "zones": annotation.zones}
    )
    sampler = (sampler or FrameSamplerConfig()).model_copy(update={"sampling": annotation.sampling})
    decoder = CameraDecoder(EVAL_CAMERA_ID, sampler)
    pipeline = CameraPipeline(camera, tracker, incidents)
    run = ClipRun(annotation.clip_id, 0.0, 0.0, 0, 0.0)
    started, cpu_started = time.perf_counter(), time.process_time()
    pending: list[SampledFrame] = []
    last_capture_ms = CLIP_EPOCH_MS

    def detect_and_route(frames: list[SampledFrame]) -> None:
        if not frames:
            return
        result = detector.detect_jpegs([f.jpeg for f in frames])
        run.detector_ms += result.timings.total_ms
        results = result.results
        if pose is not None:
            images = [
                pose.image(f.jpeg, decoded, detector.cfg.input_size)
                if pose.wants(EVAL_CAMERA_ID, objects, f.width, f.height)
                else None
                for f, objects, decoded in zip(frames, results, result.images, strict=True)
            ]
            results = pose.add_keypoints([EVAL_CAMERA_ID] * len(frames), images, results)
        for frame, objects in zip(frames, results, strict=True):
            run.frames_sampled += 1
            events = pipeline.process(_frame_detections(frame, objects, run.frames_sampled))
            _collect(events, annotation, run)
        frames.clear()

    for packet in demux(path, annotation.start_s, annotation.end_s):
        last_capture_ms = packet.capture_time_ms
        output = decoder.process(packet).finish()
        run.decode_issues += len(output.issues)
        pending.extend(output.frames)
        if len(pending) >= detector.batch_size:
            detect_and_route(pending)
    output = decoder.flush().finish()
    run.decode_issues += len(output.issues)
    pending.extend(output.frames)
    detect_and_route(pending)
    run.wall_s = time.perf_counter() - started
    run.cpu_s = time.process_time() - cpu_started
    run.duration_s = (last_capture_ms - CLIP_EPOCH_MS) / 1000.0
    return run


def _collect(events: list[AlertEvent], annotation: ClipAnnotation, run: ClipRun) -> None:
    for event in events:
        if event.kind is not AlertKind.NEW:
            continue
        at_s = (event.detected_at - CLIP_EPOCH_MS) / 1000.0
        run.alerts.append(RaisedAlert(annotation.clip_id, event.rule_type, event.zone, at_s))
        run.descriptions.append(f"{at_s:7.1f} s {event.zone}/{event.rule}: {event.description}")
