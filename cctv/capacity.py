"""`cctv capacity`: how many replicas, cores, GPUs and how much Kafka a deployment needs, from the
per-replica figures measured by `make bench` (docs/benchmarks/results.json). The model is explained
in docs/capacity.md."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from libs.topics import DETECTIONS, FRAMES, VIDEO_PACKETS, pipeline_topics

DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "results.json"
MB = 1024 * 1024


class CapacityError(ValueError):
    """results.json is missing a measurement the model needs; the message names it."""


@dataclass(frozen=True)
class Measurements:
    """Per-replica figures taken from results.json."""

    ingest_cores_per_camera: float
    sampler_cores_per_camera_keyframes: float  # sampling rate <= keyframe rate: keyframes only are decoded
    sampler_cores_per_camera_full_decode: float | None  # sampling faster than keyframes: every frame decoded
    detector_fps_per_replica: float
    detector_replica_cores: int
    detector_fps_per_gpu: float | None
    frame_record_bytes: float
    detections_record_bytes: float


@dataclass(frozen=True)
class Assumptions:
    cameras: int
    fps: float  # frames sampled per camera per second while the camera is active
    active_fraction: float = 0.3  # share of cameras where something moves (motion gating passes frames on)
    heartbeat_s: float = 30.0  # an idle camera still sends one frame per heartbeat
    keyframe_interval_s: float = 1.0
    stream_kbps: float = 512.0  # substream-class H.264 bitrate per camera
    cores_per_replica: float = 1.0  # ingest and frame-sampler replica size
    replication_factor: int = 3
    headroom: float = 0.7  # plan to this utilisation, not 100 %
    # Evidence clips in object storage (clip-writer): incidents per camera per day, mean incident length,
    # pre-roll + post-roll, and how long clips are kept (legal holds come on top).
    incidents_per_camera_day: float = 2.0
    incident_s: float = 30.0
    pre_post_roll_s: float = 20.0
    clip_retention_days: float = 30.0

    def __post_init__(self) -> None:
        if self.cameras < 1:
            raise ValueError(f"cameras must be at least 1, got {self.cameras}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not 0 <= self.active_fraction <= 1:
            raise ValueError(f"active fraction must be between 0 and 1, got {self.active_fraction}")
        if not 0 < self.headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {self.headroom}")


@dataclass(frozen=True)
class ServiceNeed:
    service: str
    cores: float
    replicas: int
    gpus: int | None
    basis: str


@dataclass(frozen=True)
class TopicNeed:
    topic: str
    mb_per_s: float
    retention_h: float
    storage_gb_per_hour: float  # written per hour, all replicas
    storage_gb_retained: float  # steady state: rate x retention x replicas


@dataclass(frozen=True)
class EvidenceNeed:
    clips_per_day: float
    gb_per_day: float  # written per day (the object store's own redundancy comes on top)
    gb_retained: float  # steady state: per day x retention days


@dataclass
class CapacityPlan:
    services: list[ServiceNeed] = field(default_factory=list)
    topics: list[TopicNeed] = field(default_factory=list)
    evidence: EvidenceNeed | None = None
    detector_fps: float = 0.0
    gpu_note: str = ""


def _pick(entries: list[dict[str, Any]], stage: str, metric_start: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["stage"] == stage and e["metric"].startswith(metric_start) and e["service"]]


def _on_gpu(entry: dict[str, Any]) -> bool:
    providers = str(entry.get("params", {}).get("providers"))
    return "CUDA" in providers or "Tensorrt" in providers


def read_results(path: Path) -> list[dict[str, Any]]:
    """The entries of `path` plus the GPU entries of its sibling GPU runs (`results-gpu*.json`, written by
    `python -m bench --only detector --providers ... --results-name results-gpu-...` on a GPU machine).
    Only GPU entries are taken from those files: their CPU figures come from another machine."""
    entries: list[dict[str, Any]] = json.loads(path.read_text())
    for gpu_run in sorted(path.parent.glob("results-gpu*.json")):
        if gpu_run != path:
            entries += [e for e in json.loads(gpu_run.read_text()) if _on_gpu(e)]
    return entries


def load_measurements(entries: list[dict[str, Any]]) -> Measurements:
    ingest = _pick(entries, "ingest", "CPU per camera")
    if not ingest:
        raise CapacityError("no ingest 'CPU per camera' measurement in results.json: run `make bench`")
    ingest_best = max(ingest, key=lambda e: e["params"].get("cameras", 0))  # the most cameras: amortised cost
    keyframes = _pick(entries, "frame-sampler", "CPU per camera, 720p15 sampled at 1 fps, GOP 1 s")
    if not keyframes:
        raise CapacityError("no frame-sampler 'CPU per camera' measurement in results.json: run `make bench`")
    full = _pick(entries, "frame-sampler", "CPU per camera, 720p15 sampled at 1 fps, GOP 2 s")
    detector = [
        e
        for e in _pick(entries, "detector", "frames per second")
        if e["metric"] == "frames per second" and not _on_gpu(e)
    ]
    if not detector:
        raise CapacityError("no detector 'frames per second' measurement in results.json: run `make bench`")
    best = max(detector, key=lambda e: e["service"])
    gpu = [e for e in _pick(entries, "detector", "frames per second") if _on_gpu(e)]
    sizes = {
        e["params"]["record"]: e["params"]["mean_record_bytes"]
        for e in entries
        if e["stage"] == "kafka" and "record" in e.get("params", {})
    }
    return Measurements(
        ingest_cores_per_camera=ingest_best["service"],
        sampler_cores_per_camera_keyframes=keyframes[0]["service"],
        sampler_cores_per_camera_full_decode=full[0]["service"] if full else None,
        detector_fps_per_replica=best["service"],
        detector_replica_cores=int(best["params"].get("intra_op_threads") or 1),
        detector_fps_per_gpu=max(e["service"] for e in gpu) if gpu else None,
        frame_record_bytes=float(sizes.get("Frame", 120_000)),
        detections_record_bytes=float(sizes.get("Detections", 1_000)),
    )


def detector_frames_per_s(a: Assumptions) -> float:
    """Frames reaching the detector: active cameras at the sampling rate, idle ones at the heartbeat."""
    active = a.cameras * a.active_fraction * a.fps
    idle = a.cameras * (1 - a.active_fraction) / a.heartbeat_s
    return active + idle


def plan(m: Measurements, a: Assumptions) -> CapacityPlan:
    result = CapacityPlan()
    usable = a.headroom

    ingest_cores = a.cameras * m.ingest_cores_per_camera / usable
    result.services.append(
        ServiceNeed(
            "ingest",
            ingest_cores,
            max(1, math.ceil(ingest_cores / a.cores_per_replica)),
            None,
            f"{m.ingest_cores_per_camera * 1000:.2f} mcores/camera ({1 / m.ingest_cores_per_camera:.0f} cameras/core)",
        )
    )

    # Every camera is decoded (motion gating happens here): keyframes only while the sampling rate does not
    # exceed the keyframe rate, else every frame.
    keyframes_suffice = a.fps <= 1 / a.keyframe_interval_s
    if keyframes_suffice or m.sampler_cores_per_camera_full_decode is None:
        per_camera = m.sampler_cores_per_camera_keyframes
        basis = "keyframes-only decode"
    else:
        per_camera = m.sampler_cores_per_camera_full_decode
        basis = "full decode (fps above keyframe rate)"
    sampler_cores = a.cameras * per_camera / usable
    result.services.append(
        ServiceNeed(
            "frame-sampler",
            sampler_cores,
            max(1, math.ceil(sampler_cores / a.cores_per_replica)),
            None,
            f"{per_camera * 1000:.1f} mcores/camera, {basis}, measured on 720p15",
        )
    )

    frames = detector_frames_per_s(a)
    result.detector_fps = frames
    cpu_replicas = max(1, math.ceil(frames / (m.detector_fps_per_replica * usable)))
    gpus: int | None = None
    if m.detector_fps_per_gpu:
        gpus = max(1, math.ceil(frames / (m.detector_fps_per_gpu * usable)))
        result.gpu_note = f"{m.detector_fps_per_gpu:.0f} frames/s per GPU measured"
    else:
        result.gpu_note = "no GPU measurement (docs/benchmarks/results-gpu*.json): GPU count not estimated"
    result.services.append(
        ServiceNeed(
            "detector (CPU)",
            cpu_replicas * m.detector_replica_cores,
            cpu_replicas,
            gpus,
            f"{frames:.0f} frames/s at {m.detector_fps_per_replica:.1f} frames/s per {m.detector_replica_cores}-core replica",
        )
    )

    retention_h = {spec.name: int(spec.config.get("retention.ms", 0)) / 3_600_000 for spec in pipeline_topics()}
    rates = {
        VIDEO_PACKETS: a.cameras * a.stream_kbps * 1000 / 8 / MB,
        FRAMES: frames * m.frame_record_bytes / MB,
        DETECTIONS: frames * m.detections_record_bytes / MB,
    }
    for topic, mb_per_s in rates.items():
        hours = retention_h.get(topic, 0.0)
        per_hour_gb = mb_per_s * 3600 * a.replication_factor / 1024
        result.topics.append(TopicNeed(topic, mb_per_s, hours, per_hour_gb, per_hour_gb * hours))
    result.evidence = evidence_need(a)
    return result


def evidence_need(a: Assumptions) -> EvidenceNeed:
    """Clips are remuxed, not re-encoded: they cost the stream's own bitrate for their length."""
    clips = a.cameras * a.incidents_per_camera_day
    gb_per_day = clips * (a.incident_s + a.pre_post_roll_s) * a.stream_kbps * 1000 / 8 / 1024**3
    return EvidenceNeed(clips, gb_per_day, gb_per_day * a.clip_retention_days)


def render(result: CapacityPlan, a: Assumptions) -> list[Table]:
    services = Table(
        title=f"{a.cameras:,} cameras, {a.fps:g} fps sampled while active, "
        f"{a.active_fraction:.0%} active, planned at {a.headroom:.0%} utilisation"
    )
    for column in ("service", "replicas", "CPU cores", "GPUs", "basis"):
        services.add_column(column, justify="left" if column in ("service", "basis") else "right")
    for need in result.services:
        if need.gpus is not None:
            gpus = str(need.gpus)
        else:
            gpus = "no GPU measurement" if need.service.startswith("detector") else "–"
        services.add_row(need.service, str(need.replicas), f"{need.cores:,.1f}", gpus, need.basis)
    topics = Table(title=f"Kafka (replication factor {a.replication_factor})")
    for column in ("topic", "MB/s in", "retention h", "GB written/hour", "GB retained"):
        topics.add_column(column, justify="left" if column == "topic" else "right")
    for need in result.topics:
        topics.add_row(
            need.topic,
            f"{need.mb_per_s:,.2f}",
            f"{need.retention_h:g}",
            f"{need.storage_gb_per_hour:,.1f}",
            f"{need.storage_gb_retained:,.0f}",
        )
    if result.evidence is not None:
        evidence = Table(
            title=f"Evidence clips in object storage ({a.incidents_per_camera_day:g} incidents/camera/day, "
            f"{a.incident_s + a.pre_post_roll_s:g} s each, kept {a.clip_retention_days:g} days)"
        )
        for column in ("clips/day", "GB/day", "GB retained"):
            evidence.add_column(column, justify="right")
        evidence.add_row(
            f"{result.evidence.clips_per_day:,.0f}",
            f"{result.evidence.gb_per_day:,.1f}",
            f"{result.evidence.gb_retained:,.0f}",
        )
        return [services, topics, evidence]
    return [services, topics]


def capacity_command(
    cameras: Annotated[int, typer.Option(help="cameras to plan for")],
    fps: Annotated[float, typer.Option(help="frames sampled per active camera per second")] = 2.0,
    results: Annotated[Path, typer.Option(help="bench results (make bench)")] = DEFAULT_RESULTS,
    active_fraction: Annotated[float, typer.Option(help="share of cameras with motion at a time")] = 0.3,
    stream_kbps: Annotated[float, typer.Option(help="video bitrate per camera, kbit/s")] = 512.0,
    replication_factor: Annotated[int, typer.Option(help="Kafka replication factor")] = 3,
    headroom: Annotated[float, typer.Option(help="target utilisation of each replica (0-1]")] = 0.7,
    incidents_per_camera_day: Annotated[
        float, typer.Option(help="incidents (evidence clips) per camera per day")
    ] = 2.0,
    clip_retention_days: Annotated[float, typer.Option(help="days evidence clips are kept")] = 30.0,
) -> None:
    """Replicas, CPU cores, GPUs and Kafka throughput/storage for CAMERAS cameras, from measured figures."""
    console = Console()
    if not results.is_file():
        console.print(f"[red]{results} not found: run `make bench` first (or pass --results)[/]")
        raise typer.Exit(1)
    try:
        measurements = load_measurements(read_results(results))
        assumptions = Assumptions(
            cameras=cameras,
            fps=fps,
            active_fraction=active_fraction,
            stream_kbps=stream_kbps,
            replication_factor=replication_factor,
            headroom=headroom,
            incidents_per_camera_day=incidents_per_camera_day,
            clip_retention_days=clip_retention_days,
        )
    except (CapacityError, ValueError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None
    result = plan(measurements, assumptions)
    for table in render(result, assumptions):
        console.print(table)
    console.print(f"detector input: {result.detector_fps:,.0f} frames/s; {result.gpu_note}")
