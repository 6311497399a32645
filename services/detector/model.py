"""Model loading: ONNX Runtime session with the best available execution provider (TensorRT, CUDA, CPU),
thread pools sized to the container's CPU quota, and the model's identity and class names."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime  # type: ignore[import-untyped]

from services.detector.config import (
    COCO_CLASS_NAMES,
    DetectorModelConfig,
    ModelIdentity,
    ModelLoadError,
)

log = logging.getLogger(__name__)


def container_cpu_limit(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may really use: the cgroup v2 quota if set, else the visible cores."""
    try:
        visible = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        visible = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return max(1, visible)
    if quota == "max":
        return max(1, visible)
    try:
        quota_cpus = math.ceil(int(quota) / int(period))
    except (ValueError, ZeroDivisionError):
        return max(1, visible)
    return max(1, min(visible, quota_cpus))


def choose_providers(preferred: Sequence[str], available: Sequence[str]) -> list[str]:
    """Preferred providers that this onnxruntime build has, in preference order; CPU is always last resort."""
    chosen = [provider for provider in preferred if provider in available]
    if "CPUExecutionProvider" in available and "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    if not chosen:
        raise ModelLoadError(f"none of the providers {list(preferred)} is available; this build has {list(available)}")
    return chosen


ProviderSpec = tuple[str, dict[str, str]]


def provider_options(
    providers: Sequence[str], cfg: DetectorModelConfig, input_name: str, input_shape: Sequence[int | str | None]
) -> list[ProviderSpec]:
    """ONNX Runtime provider list with each provider's options.

    TensorRT gets one optimisation profile covering batch 1..max_batch_size (without it the provider
    rebuilds its engine, for minutes, whenever a larger batch arrives), an engine and timing cache on
    disk (so a restart loads the engine instead of building it) and FP16 if enabled.
    """
    specs: list[ProviderSpec] = []
    for provider in providers:
        if provider == "TensorrtExecutionProvider":
            model_batch = input_shape[0] if isinstance(input_shape[0], int) and input_shape[0] > 0 else None

            def shape(batch: int, model_batch: int | None = model_batch) -> str:
                sides = [model_batch or batch] + [
                    side if isinstance(side, int) and side > 0 else cfg.input_size for side in input_shape[1:]
                ]
                return f"{input_name}:{'x'.join(str(side) for side in sides)}"

            cache = str(cfg.tensorrt_cache_dir)
            specs.append(
                (
                    provider,
                    {
                        "device_id": str(cfg.device_id),
                        "trt_fp16_enable": str(cfg.tensorrt_fp16),
                        "trt_engine_cache_enable": "True",
                        "trt_engine_cache_path": cache,
                        "trt_timing_cache_enable": "True",
                        "trt_timing_cache_path": cache,
                        "trt_profile_min_shapes": shape(1),
                        "trt_profile_opt_shapes": shape(cfg.max_batch_size),
                        "trt_profile_max_shapes": shape(cfg.max_batch_size),
                    },
                )
            )
        elif provider == "CUDAExecutionProvider":
            specs.append((provider, {"device_id": str(cfg.device_id)}))
        else:
            specs.append((provider, {}))
    return specs


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class LoadedModel:
    session: onnxruntime.InferenceSession
    identity: ModelIdentity
    input_name: str
    fixed_batch: int | None  # None: the model takes any batch size
    class_names: tuple[str, ...]
    providers: tuple[str, ...]
    intra_op_threads: int


def _preload_gpu_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels that onnxruntime-gpu's [cuda,cudnn] extras install
    (the GPU image has no system CUDA); without this the CUDA provider cannot find them and the
    session quietly runs on the CPU."""
    preload = getattr(onnxruntime, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is None:
        return
    try:
        preload()
    except Exception as error:  # noqa: BLE001 - a missing wheel is reported; system-wide CUDA may still serve
        log.warning("could not preload CUDA/cuDNN from the nvidia wheels: %s", error)


def _open_session(
    path: Path, options: onnxruntime.SessionOptions, specs: list[ProviderSpec]
) -> onnxruntime.InferenceSession:
    try:
        return onnxruntime.InferenceSession(
            str(path),
            sess_options=options,
            providers=[name for name, _ in specs],
            provider_options=[opts for _, opts in specs],
        )
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelLoadError(f"cannot load {path} as an ONNX model: {error}") from error


def _class_names_from_metadata(metadata: dict[str, str]) -> tuple[str, ...] | None:
    if "class_names" in metadata:  # written by models/convert_centernet.py
        names = json.loads(metadata["class_names"])
        return tuple(str(name) for name in names)
    if "names" in metadata:  # Ultralytics exports: "{0: 'person', 1: 'bicycle', ...}"
        names_by_id = ast.literal_eval(metadata["names"])
        return tuple(str(names_by_id[index]) for index in sorted(names_by_id))
    return None


def load_model(cfg: DetectorModelConfig) -> LoadedModel:
    """Open an ONNX Runtime session with the best available provider and CPU-quota-sized thread pools."""
    threads = cfg.intra_op_threads or container_cpu_limit()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one model graph, sequential: extra inter-op threads only contend
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = choose_providers(cfg.providers, onnxruntime.get_available_providers())
    if providers != ["CPUExecutionProvider"]:
        _preload_gpu_libraries()
    input_name, input_shape = "", []
    if "TensorrtExecutionProvider" in providers:
        # The optimisation profile names the graph input, known only once the graph is read: read it
        # first with a plain CPU session (a fraction of a second, only where TensorRT is present).
        probe = _open_session(cfg.path, onnxruntime.SessionOptions(), [("CPUExecutionProvider", {})])
        input_name, input_shape = probe.get_inputs()[0].name, probe.get_inputs()[0].shape
        try:
            cfg.tensorrt_cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ModelLoadError(
                f"cannot create the TensorRT engine cache {cfg.tensorrt_cache_dir}: {error}; "
                f"set the detector model tensorrt_cache_dir to a writable directory"
            ) from error
    specs = provider_options(providers, cfg, input_name, input_shape)
    session = _open_session(cfg.path, options, specs)
    if providers[0] != "CPUExecutionProvider" and session.get_providers()[0] == "CPUExecutionProvider":
        # onnxruntime-gpu falls back to the CPU with only its own log lines; say it plainly once more.
        log.warning(
            "GPU providers %s are in this onnxruntime build but the model runs on the CPU; "
            "`python -m services.detector.gpu_check` says why",
            providers[:-1],
        )

    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelLoadError(f"{cfg.path}: expected one 4-D image input, found {[(i.name, i.shape) for i in inputs]}")
    batch_dim = inputs[0].shape[0]
    fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
    spatial = inputs[0].shape[1:3] if cfg.format == "centernet" else inputs[0].shape[2:4]
    if any(isinstance(side, int) and side != cfg.input_size for side in spatial):
        raise ModelLoadError(
            f"{cfg.path} expects {spatial} input pixels but input_size is {cfg.input_size}; "
            f"set input_size to match the model (or check the format, currently {cfg.format!r}); "
            f"the INT8 CenterNet (precision int8) takes any multiple of 32"
        )
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    class_names = (
        tuple(cfg.class_names) if cfg.class_names else (_class_names_from_metadata(metadata) or COCO_CLASS_NAMES)
    )
    identity = ModelIdentity(name=cfg.name or cfg.path.stem, version=cfg.version, sha256=file_sha256(cfg.path))
    return LoadedModel(
        session=session,
        identity=identity,
        input_name=inputs[0].name,
        fixed_batch=fixed_batch,
        class_names=class_names,
        providers=tuple(session.get_providers()),
        intra_op_threads=threads,
    )


def run_batch(session: onnxruntime.InferenceSession, batch: np.ndarray) -> list[np.ndarray]:
    """One forward pass; returns all model outputs."""
    input_name = session.get_inputs()[0].name
    return session.run(None, {input_name: batch})
