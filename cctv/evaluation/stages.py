"""The model stages `cctv eval` runs clips through, in this process or in `jobs` worker processes.

Clips are independent (each has its own decoder, tracker and rules), so several can run at once, each
worker with its own detector and pose sessions and an equal share of the CPU threads. What is measured
does not change: the same cores, models and settings; only the clips overlap in time.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .annotations import ClipAnnotation

if TYPE_CHECKING:
    from services.detector.detector import Detector
    from services.detector.pose import PoseStage

    from .runner import ClipRun

# Rule types that need keypoints: their clips go through the pose stage too.
POSE_RULE_TYPES = frozenset({"fall", "fighting"})


def needs_pose(clip: ClipAnnotation) -> bool:
    return any(r.get("type") in POSE_RULE_TYPES for z in clip.zones for r in z.get("rules") or [])


@dataclass(frozen=True, slots=True)
class StageSettings:
    detector_overrides: dict[str, Any]
    with_pose: bool
    threads: int | None = None  # per process; None: the detector's default (the CPU quota)


class Stages:
    def __init__(self, settings: StageSettings) -> None:
        from services.detector.config import DetectorModelConfig
        from services.detector.detector import Detector
        from services.detector.pose import PoseEstimator, PoseModelConfig, PoseStage

        threads = {} if settings.threads is None else {"intra_op_threads": settings.threads}
        self.detector: Detector = Detector(
            DetectorModelConfig.model_validate({**settings.detector_overrides, **threads})
        )
        self.pose: PoseStage | None = None
        if settings.with_pose:
            estimator = PoseEstimator(PoseModelConfig.model_validate(threads))
            self.pose = PoseStage(estimator, needs_pose=lambda _camera: True)

    @property
    def model_name(self) -> str:
        identity = self.detector.identity
        return f"{identity.name} {identity.version} sha256:{identity.sha256[:12]}"

    def run(self, path: Path, clip: ClipAnnotation) -> ClipRun:
        from services.detector.pose import PoseStage, pose_zone_polygons

        from .runner import run_clip

        pose = None
        if self.pose is not None and needs_pose(clip):
            # As the detector service does: only people touching a zone with a pose rule get keypoints.
            polygons = pose_zone_polygons(clip.zones, POSE_RULE_TYPES)
            pose = PoseStage(self.pose.estimator, needs_pose=lambda _camera: True, pose_zones=lambda _camera: polygons)
        return run_clip(path, clip, self.detector, pose)

    def close(self) -> None:
        self.detector.close()


_worker: Stages | None = None


def _start_worker(settings: StageSettings) -> None:
    global _worker
    _worker = Stages(settings)


def _run_in_worker(path: Path, clip: ClipAnnotation) -> tuple[ClipRun, str]:
    assert _worker is not None, "worker initializer did not run"
    return _worker.run(path, clip), _worker.model_name


def run_clips(
    clips: list[ClipAnnotation], clips_dir: Path, detector_overrides: dict[str, Any], jobs: int = 1
) -> tuple[list[ClipRun], str]:
    """Every clip through the stages, in order of `clips`; and the detector model's name."""
    from services.detector.model import container_cpu_limit

    with_pose = any(needs_pose(c) for c in clips)
    jobs = max(1, min(jobs, len(clips)))
    if jobs == 1:
        stages = Stages(StageSettings(detector_overrides, with_pose))
        try:
            return [stages.run(clips_dir / c.clip, c) for c in clips], stages.model_name
        finally:
            stages.close()
    settings = StageSettings(detector_overrides, with_pose, threads=max(1, container_cpu_limit() // jobs))
    # spawn: a fresh interpreter per worker, no ONNX Runtime thread pools inherited half-initialised.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(settings,)) as pool:
        results = list(pool.map(_run_in_worker, [clips_dir / c.clip for c in clips], clips))
    return [run for run, _ in results], results[0][1]
