"""The capacity model (cctv/capacity.py) as plain functions over bench result entries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cctv.capacity import (
    Assumptions,
    CapacityError,
    detector_frames_per_s,
    load_measurements,
    plan,
    read_results,
)
from libs.topics import DETECTIONS, FRAMES, VIDEO_PACKETS


def entry(stage: str, metric: str, service: float, **params: object) -> dict[str, object]:
    return {
        "stage": stage,
        "metric": metric,
        "unit": "",
        "service": service,
        "bare": None,
        "ratio": None,
        "params": params,
    }


def bench_entries(gpu_fps: float | None = None) -> list[dict[str, object]]:
    entries = [
        entry("ingest", "CPU per camera", 0.004, cameras=50),
        entry("ingest", "CPU per camera", 0.002, cameras=200),
        entry("frame-sampler", "CPU per camera, 720p15 sampled at 1 fps, GOP 1 s (keyframes suffice: fast path)", 0.01),
        entry("frame-sampler", "CPU per camera, 720p15 sampled at 1 fps, GOP 2 s (full decode)", 0.05),
        entry(
            "detector", "frames per second", 20.0, batch_size=1, intra_op_threads=2, providers=["CPUExecutionProvider"]
        ),
        entry(
            "detector", "frames per second", 25.0, batch_size=8, intra_op_threads=2, providers=["CPUExecutionProvider"]
        ),
        entry("detector", "frames per second through Kafka loop", 24.0, batch_size=8),
        entry("kafka", "produce Frame records/s", 500, record="Frame", mean_record_bytes=100_000),
        entry("kafka", "produce Detections records/s", 5000, record="Detections", mean_record_bytes=1_000),
    ]
    if gpu_fps:
        entries.append(
            entry(
                "detector",
                "frames per second",
                gpu_fps,
                batch_size=8,
                intra_op_threads=4,
                providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
            )
        )
    return entries


def test_measurements_take_the_most_amortised_ingest_figure_and_the_fastest_cpu_detector() -> None:
    m = load_measurements(bench_entries())
    assert m.ingest_cores_per_camera == 0.002
    assert m.detector_fps_per_replica == 25.0
    assert m.detector_replica_cores == 2
    assert m.detector_fps_per_gpu is None
    assert m.frame_record_bytes == 100_000


def test_gpu_measurement_is_kept_apart_from_cpu_replicas() -> None:
    m = load_measurements(bench_entries(gpu_fps=400.0))
    assert m.detector_fps_per_gpu == 400.0
    assert m.detector_fps_per_replica == 25.0


def test_gpu_runs_beside_the_results_add_only_their_gpu_figures(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(bench_entries()))
    assert load_measurements(read_results(results)).detector_fps_per_gpu is None
    gpu_run = [e for e in bench_entries(gpu_fps=900.0) if e["stage"] == "detector"]
    gpu_run.append(
        entry(
            "detector",
            "frames per second",
            300.0,
            batch_size=8,
            intra_op_threads=16,
            providers=["CPUExecutionProvider"],
        )
    )  # that machine's CPU: not a CPU replica figure
    (tmp_path / "results-gpu-cuda.json").write_text(json.dumps(gpu_run))
    m = load_measurements(read_results(results))
    assert m.detector_fps_per_gpu == 900.0
    assert m.detector_fps_per_replica == 25.0


def test_missing_measurement_names_what_to_run() -> None:
    entries = [e for e in bench_entries() if e["stage"] != "detector"]
    with pytest.raises(CapacityError, match="detector 'frames per second'.*make bench"):
        load_measurements(entries)


def test_detector_load_counts_active_cameras_at_the_rate_and_idle_ones_at_the_heartbeat() -> None:
    a = Assumptions(cameras=1000, fps=2, active_fraction=0.25, heartbeat_s=30)
    assert detector_frames_per_s(a) == pytest.approx(1000 * 0.25 * 2 + 750 / 30)


def test_plan_for_the_reference_district() -> None:
    m = load_measurements(bench_entries())
    a = Assumptions(cameras=3609, fps=2, active_fraction=0.3, headroom=0.5, replication_factor=3, stream_kbps=512)
    result = plan(m, a)
    needs = {need.service: need for need in result.services}
    assert needs["ingest"].cores == pytest.approx(3609 * 0.002 / 0.5)
    assert needs["ingest"].replicas == math.ceil(3609 * 0.002 / 0.5)
    # 2 fps is above the 1 s keyframe rate: the full-decode figure applies.
    assert needs["frame-sampler"].cores == pytest.approx(3609 * 0.05 / 0.5)
    frames = 3609 * 0.3 * 2 + 3609 * 0.7 / 30
    assert needs["detector (CPU)"].replicas == math.ceil(frames / (25.0 * 0.5))
    assert needs["detector (CPU)"].cores == needs["detector (CPU)"].replicas * 2
    assert needs["detector (CPU)"].gpus is None
    assert "no GPU measurement" in result.gpu_note
    topics = {t.topic: t for t in result.topics}
    assert topics[VIDEO_PACKETS].mb_per_s == pytest.approx(3609 * 512_000 / 8 / 2**20)
    assert topics[VIDEO_PACKETS].retention_h == 1
    assert topics[FRAMES].mb_per_s == pytest.approx(frames * 100_000 / 2**20)
    # Frames keep minutes, not a day: lasting evidence is the clip in object storage.
    assert topics[FRAMES].retention_h == 0.25
    assert topics[FRAMES].storage_gb_retained == pytest.approx(topics[FRAMES].mb_per_s * 3600 * 3 / 1024 * 0.25)
    assert topics[FRAMES].storage_gb_retained < 1000  # was ~43 TB with 24 h
    assert topics[DETECTIONS].retention_h == 72
    clips = 3609 * 2
    assert result.evidence is not None and result.evidence.clips_per_day == clips
    assert result.evidence.gb_per_day == pytest.approx(clips * 50 * 512_000 / 8 / 2**30)
    assert result.evidence.gb_retained == pytest.approx(result.evidence.gb_per_day * 30)


def test_sampling_at_or_below_the_keyframe_rate_uses_the_keyframe_figure() -> None:
    m = load_measurements(bench_entries())
    needs = {n.service: n for n in plan(m, Assumptions(cameras=100, fps=1, headroom=1.0)).services}
    assert needs["frame-sampler"].cores == pytest.approx(100 * 0.01)
    assert "keyframes-only" in needs["frame-sampler"].basis


def test_gpu_count_follows_the_gpu_figure() -> None:
    m = load_measurements(bench_entries(gpu_fps=400.0))
    needs = {n.service: n for n in plan(m, Assumptions(cameras=3609, fps=2, headroom=1.0)).services}
    frames = 3609 * 0.3 * 2 + 3609 * 0.7 / 30
    assert needs["detector (CPU)"].gpus == math.ceil(frames / 400.0)


@pytest.mark.parametrize("bad", [{"cameras": 0}, {"fps": 0}, {"active_fraction": 1.5}, {"headroom": 0}])
def test_bad_assumptions_are_rejected_with_the_value(bad: dict[str, float]) -> None:
    values = {"cameras": 10, "fps": 1.0} | bad
    with pytest.raises(ValueError, match="must"):
        Assumptions(**values)
