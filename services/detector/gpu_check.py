"""`python -m services.detector.gpu_check`: can this environment's ONNX Runtime use the GPU?

Run at image build time (no GPU there) and by operators in a pod (`kubectl exec deploy/... -- python
-m services.detector.gpu_check`) when a detector logs that it runs on the CPU. It checks, in order:
onnxruntime-gpu (not the CPU wheel) is installed; after loading CUDA and cuDNN from the nvidia-*
wheels, every library the CUDA provider links against is present except the driver's libcuda.so.1,
which the NVIDIA container runtime mounts at run time; and, where a driver is present, that a
session on the default model really runs on the CUDA provider. Exit status 0 when all that can be
checked here passed, 1 with the reason otherwise.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnxruntime  # type: ignore[import-untyped]

DRIVER_LIBRARY = "libcuda.so.1"  # comes with the host's driver, never with an image


def loaded_libraries() -> set[str]:
    """File names of the shared libraries mapped into this process."""
    names = set()
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5].startswith("/"):
            names.add(Path(parts[5]).name)
    return names


def missing_libraries(library: Path) -> list[str]:
    """Libraries `library` links against that neither the loader finds nor this process has loaded."""
    output = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=False).stdout
    unresolved = [line.split("=>")[0].strip() for line in output.splitlines() if "not found" in line]
    loaded = loaded_libraries()
    return [name for name in unresolved if name not in loaded]


def main() -> int:
    providers = onnxruntime.get_available_providers()
    print(f"onnxruntime {onnxruntime.__version__}; providers in this build: {providers}")
    if "CUDAExecutionProvider" not in providers:
        print("FAIL: this is the CPU onnxruntime wheel; install the distribution with the gpu extra, not cpu")
        return 1
    onnxruntime.preload_dlls()
    cuda_provider = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    missing = missing_libraries(cuda_provider)
    others = [name for name in missing if name != DRIVER_LIBRARY]
    if others:
        print(f"FAIL: the CUDA provider cannot load; missing {others} (install onnxruntime-gpu[cuda,cudnn])")
        return 1
    if DRIVER_LIBRARY in missing:
        print(
            f"OK: CUDA and cuDNN libraries present; no {DRIVER_LIBRARY} here (no NVIDIA driver), "
            "so the GPU itself is not tried"
        )
        return 0
    from services.detector.config import DetectorModelConfig
    from services.detector.detector import Detector

    detector = Detector(DetectorModelConfig(providers=["CUDAExecutionProvider"], preprocess_threads=1))
    used = detector.model.session.get_providers()
    if used[0] != "CUDAExecutionProvider":
        print(f"FAIL: a driver is present but the session runs on {used}; see the onnxruntime messages above")
        return 1
    print(f"OK: the default model runs on {used[0]}; warm batch {detector.warmup():.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
