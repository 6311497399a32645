"""What the end-to-end tests share: the environment a service process gets (every service reads the same
settings layout, libs/settings.py, so a test names only what it changes on top of `service_env`), the four
pipeline services started as real processes, and the sample footage as a live camera."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cctv.devstack.services import PIPELINE_SERVICES, ServiceProcess
from libs.cameras import CameraEntry, Sampling

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "vtest-h264.mp4"
ROAD = [[0.30, 0.30], [0.90, 0.20], [0.99, 0.42], [0.55, 0.64], [0.30, 0.52]]  # where people walk in SAMPLE


def service_env(
    bootstrap: str | None, registry_url: str | None = None, *, http_port: int = 0, group: str | None = None
) -> dict[str, str]:
    """Broker (None: the caller adds its own CCTV_KAFKA__*, e.g. SASL), registry, metrics port (0: any
    free one), plain-text logs and the consumer group."""
    env = {"CCTV_HTTP__PORT": str(http_port), "CCTV_LOG__FORMAT": "text"}
    if bootstrap is not None:
        env["CCTV_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
    if registry_url is not None:
        env["CCTV_REGISTRY__URL"] = registry_url
    if group is not None:
        env["CCTV_GROUP_ID"] = group
    return env


def pipeline_group(service: str, unique: str) -> str:
    """The test's consumer group of a pipeline service: the production name (what the ACLs allow) + a suffix."""
    return f"cctv-{service}-{unique}"


def start_pipeline(
    common: dict[str, str],
    unique: str,
    workdir: Path,
    per_service: Callable[[str], dict[str, str]] = lambda _name: {},
) -> list[ServiceProcess]:
    """ingest, frame-sampler, detector and alert-router as real processes: `common` settings, each its own
    consumer group, the router's Faust state and every log under `workdir`, plus `per_service(name)`."""
    services = []
    for name in PIPELINE_SERVICES:
        env = common | {"CCTV_GROUP_ID": pipeline_group(name, unique)} | per_service(name)
        if name == "alert-router":
            env["CCTV_DATA_DIR"] = str(workdir / "faust")
        services.append(ServiceProcess(name, env, workdir / f"{name}.log").start())
    return services


def campus_camera(camera_id: str, name: str, **fields: Any) -> CameraEntry:
    """The sample footage as a live camera of the campus crime hot spot: looped in real time, 2 fps sampled,
    an intrusion rule on the road where people walk (`zones=` and other fields override)."""
    entry: dict[str, Any] = {
        "camera_id": camera_id,
        "name": name,
        "site_id": "campus",
        "stream_url": f"file://{SAMPLE}",
        "loop": True,
        "realtime": True,
        "tags": ["crime-hotspot"],
        "sampling": Sampling(mode="fps", fps=2, heartbeat_s=10),
        "zones": [{"name": "road", "polygon": ROAD, "rules": [{"type": "intrusion"}]}],
    }
    return CameraEntry(**(entry | fields))
