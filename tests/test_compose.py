"""docker-compose.yml and the Dockerfiles, checked offline (there is no Docker engine here).

The compose file is validated by Debian's docker-compose (v1.29, `apt-get install docker-compose`)
and parsed by PyPI's compose-spec; structural facts are asserted on the normalised configuration
that `docker-compose config` prints (YAML anchors and merge keys resolved).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyOptions

from tests.deployed_settings import load_as_deployed

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
GPU_DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile.gpu"
PIPELINE_SERVICES = {
    "ingest": "cctv-ingest",
    "frame-sampler": "cctv-frame-sampler",
    "detector": "cctv-detector",
    "alert-router": "cctv-alert-router",
    "clip-writer": "cctv-clip-writer",
    "dispatcher": "cctv-dispatcher",
    "share-gateway": "cctv-share-gateway",
}
ONE_SHOTS = {
    "topics-init": ["cctv", "topics", "create"],
    "cameras-init": None,
    "evidence-key-init": None,
    "share-key-init": None,
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|SASL_USERNAME|API_KEY", re.IGNORECASE)
URL_WITH_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def docker_compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose not found: install Debian's package (`apt-get install -y docker-compose`, "
            "v1.29) — it validates the file offline, no Docker engine needed",
            pytrace=False,
        )
    return binary


def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: the file must validate without any variable set by the caller.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    return subprocess.run(
        [docker_compose_binary(), "--project-directory", str(REPO_ROOT), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
        env=env,
    )


@pytest.fixture(scope="module")
def normalised() -> dict[str, Any]:
    result = run_compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_docker_compose_validates_the_file_quietly() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_docker_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    """Negative control: the validator above really validates (an unknown key fails)."""
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["kafka"]["helthcheck"] = broken["services"]["kafka"].pop("healthcheck")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [docker_compose_binary(), "--project-directory", str(REPO_ROOT), "-f", str(path), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "helthcheck" in result.stderr


def test_compose_spec_parses_the_file_and_its_references_resolve() -> None:
    compose = PyOptions(apply_merge=True).from_yaml(COMPOSE_FILE.read_text())
    compose.validate()  # every referenced volume/network/secret is declared
    assert compose.name is None, "no top-level name: Debian's docker-compose 1.29 rejects it"
    assert set(compose.service_names()) == {"kafka", "registry", "camera", "s3", *ONE_SHOTS, *PIPELINE_SERVICES}


def test_kafka_runs_in_kraft_mode_from_the_official_image(normalised: dict[str, Any]) -> None:
    kafka = normalised["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from `cctv topics create`"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_registry_is_apicurio_and_services_use_its_confluent_api(normalised: dict[str, Any]) -> None:
    services = normalised["services"]
    assert services["registry"]["image"].startswith("apicurio/apicurio-registry:")
    for name in [*PIPELINE_SERVICES, *ONE_SHOTS]:
        env = services[name]["environment"]
        assert env["CCTV_REGISTRY__URL"] == "http://registry:8080/apis/ccompat/v7", name
        assert env["CCTV_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092", name


def test_every_service_is_health_checked_or_gated_by_conditions(normalised: dict[str, Any]) -> None:
    services = normalised["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        for dependency, spec in depends_on.items():
            assert spec["condition"] in ("service_healthy", "service_completed_successfully"), (
                f"{name} waits for {dependency} only to start"
            )
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
        long_running = service.get("restart", "no") != "no"
        if long_running:
            assert "healthcheck" in service, f"{name} runs forever but has no healthcheck"
        else:
            assert depends_on, f"one-shot {name} must wait for its dependencies"


def test_pipeline_services_wait_for_topics_and_report_readiness(normalised: dict[str, Any]) -> None:
    services = normalised["services"]
    assert services["topics-init"]["command"] == ONE_SHOTS["topics-init"]
    assert services["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name, script in PIPELINE_SERVICES.items():
        service = services[name]
        assert service["command"] == [script]
        assert service["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"
        assert any("/readyz" in part for part in service["healthcheck"]["test"]), name
        assert service["read_only"] is True and "/tmp" in service["tmpfs"], name
    assert services["ingest"]["depends_on"]["camera"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(PIPELINE_SERVICES))
def test_every_variable_a_service_gets_is_one_it_reads(
    name: str, normalised: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = normalised["services"][name]
    env = {key: str(value) for key, value in service["environment"].items()}
    settings = load_as_deployed(name, env, None, tmp_path, monkeypatch)
    if name == "alert-router":  # faust's table store lives on the named volume
        volume_targets = [
            volume["target"] if isinstance(volume, dict) else volume.split(":")[1] for volume in service["volumes"]
        ]
        assert any(str(settings.data_dir).startswith(target + "/") for target in volume_targets)  # type: ignore[attr-defined]
    if name == "detector":
        assert settings.max_batch == 4  # type: ignore[attr-defined]
    if name == "clip-writer":  # the signing key is on the volume the key-init one-shot writes
        key_file = str(settings.evidence.signing_key_file)  # type: ignore[attr-defined]
        init = normalised["services"]["evidence-key-init"]
        assert key_file in init["command"] and service["depends_on"]["s3"]["condition"] == "service_healthy"
        assert settings.s3.endpoint_url == "http://s3:8333"  # type: ignore[attr-defined]


def test_sample_camera_streams_real_footage_from_the_mounted_samples(normalised: dict[str, Any]) -> None:
    camera = normalised["services"]["camera"]
    assert camera["image"].startswith("bluenviron/mediamtx:") and camera["image"].endswith("-ffmpeg")
    # docker-compose 1.29 normalises bind mounts to "SOURCE:TARGET:MODE".
    mounts = {target: Path(source) for source, target, _mode in (v.split(":") for v in camera["volumes"])}
    assert mounts["/samples"] == REPO_ROOT / "samples"
    config = yaml.safe_load(mounts["/mediamtx.yml"].read_text())
    command = config["paths"]["vtest"]["runOnInit"]
    sample = re.search(r"-i /samples/(\S+)", command).group(1)
    # The looped file is one that samples/make_samples.py produces from real footage.
    assert f'"{sample}"' in (REPO_ROOT / "samples" / "make_samples.py").read_text()


def test_compose_camera_inventory_is_accepted_by_the_cli(normalised: dict[str, Any]) -> None:
    from cctv.inventory import load_file  # the parser behind `cctv cameras apply -f`

    init = normalised["services"]["cameras-init"]
    file_in_container = init["command"][init["command"].index("-f") + 1]
    mounts = {target: Path(source) for source, target, _mode in (v.split(":") for v in init["volumes"])}
    cameras = load_file(mounts[file_in_container])
    assert [camera.stream_url for camera in cameras] == ["rtsp://camera:8554/vtest"]
    assert cameras[0].zones, "the sample camera has rules to exercise the alert-router"


def test_no_credentials_are_written_in_the_compose_file(raw: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    assert not URL_WITH_USERINFO.search(text), "user:password@ in a URL"
    for name, service in raw["services"].items():
        environment = service.get("environment", {})
        items = (
            environment.items()
            if isinstance(environment, dict)
            else (entry.split("=", 1) if "=" in entry else (entry, None) for entry in environment)
        )
        for key, value in items:
            if key != "<<" and SECRET_NAME.search(key):
                assert value is None or re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", str(value)), (
                    f"{name}: {key} must come from the caller's environment, not the file"
                )


# --------------------------------------------------------------------------------------------
# Dockerfiles (static checks; the images are built by CI elsewhere)
# --------------------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    logical = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, arguments = stripped.partition(" ")
            result.append((instruction.upper(), arguments.strip()))
    return result


@pytest.mark.parametrize("path", [DOCKERFILE, GPU_DOCKERFILE], ids=["cpu", "gpu"])
def test_images_run_as_uid_10001_under_tini_and_ship_models_and_schemas(path: Path) -> None:
    instructions = dockerfile_instructions(path)
    stages = [args for instruction, args in instructions if instruction == "FROM"]
    assert len(stages) >= 2, "multi-stage build"
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm") in instructions
    assert ("ARG", "APP_UID=10001") in instructions
    last_user = [args for instruction, args in instructions if instruction == "USER"][-1]
    assert last_user == "${APP_UID}:${APP_UID}"
    assert ("ENTRYPOINT", '["/usr/bin/tini", "--"]') in instructions
    copies = [args for instruction, args in instructions if instruction == "COPY"]
    assert "models /app/models" in copies and "schemas /app/schemas" in copies
    for source in ("pyproject.toml", "cctv", "libs", "services", "schemas", "models"):
        assert (REPO_ROOT / source).exists(), f"{path.name} copies {source}, which is missing"


def test_gpu_image_takes_cuda_from_the_wheels_it_was_built_for_and_never_the_cpu_wheel() -> None:
    text = GPU_DOCKERFILE.read_text()
    instructions = dockerfile_instructions(GPU_DOCKERFILE)
    # No CUDA base image to drift from the wheel: CUDA and cuDNN come as the wheel's own extras.
    assert not any(i == "FROM" and "nvidia/cuda" in a for i, a in instructions)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    (gpu_requirement,) = project["optional-dependencies"]["gpu"]
    assert re.fullmatch(r"onnxruntime-gpu\[cuda,cudnn\]>=1\.(2[7-9]|[3-9][0-9])", gpu_requirement), gpu_requirement
    assert '["optional-dependencies"]["gpu"]' in text and '["optional-dependencies"]["cpu"]' not in text
    assert ".[cpu]" not in text and ".[gpu]" in text
    # The build fails unless the CUDA provider's libraries all resolve (services/detector/gpu_check.py).
    assert any(i == "RUN" and "python -m services.detector.gpu_check" in a for i, a in instructions)
    assert ("ENV", "CCTV_MODEL__TENSORRT_CACHE_DIR=/var/cache/cctv/tensorrt") in [
        (i, part)
        for i, a in instructions
        if i == "ENV"
        for part in a.split()
        if part.startswith("CCTV_MODEL__TENSORRT")
    ]
    cpu_text = DOCKERFILE.read_text()
    assert '["optional-dependencies"]["cpu"]' in cpu_text and "gpu" not in cpu_text.replace("Dockerfile.gpu", "")


def test_dockerignore_keeps_secrets_and_environments_out_of_the_build_context() -> None:
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    assert lines[lines.index("*")] == "*", "deny by default"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "cctv", "libs", "services", "schemas", "models"} <= allowed
    assert not allowed & {".venv", ".cache", ".git", "tests", "samples"}
