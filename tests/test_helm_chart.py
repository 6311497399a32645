"""The Helm chart helm/cctv-platform, checked offline with a real helm and Kubernetes' own schemas.

helm is built by scripts/install-helm.sh into .cache/bin/helm (the Makefile runs it before tests).
Every rendered manifest, except the CRD kinds in CRD_KINDS_CHECKED_STRUCTURALLY, is validated with
kubernetes-validate in strict mode (unknown fields rejected) for each supported Kubernetes version.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deployed_settings import load_as_deployed

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART = REPO_ROOT / "helm" / "cctv-platform"
PRODUCTION_VALUES = CHART / "values-production.yaml"
HELM = REPO_ROOT / ".cache" / "bin" / "helm"

KUBERNETES_VERSIONS = ("1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0")
# Custom resources have no schema in kubernetes-validate; these (and only these) are skipped there
# and checked by the dedicated tests below instead.
CRD_KINDS_CHECKED_STRUCTURALLY = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
COMPONENTS = ("ingest", "frame-sampler", "detector", "alert-router", "console")  # enabled by default
CONTROLLER = "camera-controller"  # only with cameras.source=crds (production values)
# The clip-writer needs its Secrets (object store, signing key) named: off by default, on in production.
ALL_COMPONENTS = (*COMPONENTS, "clip-writer")
ENABLED = {"default": COMPONENTS, "production": ALL_COMPONENTS}
# The contract with the code: consumer group and input topic that lag-based scaling watches.
LAG_SCALED = {
    "frame-sampler": ("cctv-frame-sampler", "cctv.video.packets.v1"),
    "detector": ("cctv-detector", "cctv.frames.v1"),
    "alert-router": ("cctv-alert-router", "cctv.detections.v1"),
}
VALUE_SETS = {"default": (), "production": (str(PRODUCTION_VALUES),)}
RELEASE = "cctv"


def helm_binary() -> Path:
    if not HELM.is_file():
        pytest.fail(
            f"helm not found at {HELM}: run scripts/install-helm.sh first "
            "(it builds helm v3.22.0 from source with Go; `make test` does this for you)",
            pytrace=False,
        )
    return HELM


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=False)


def _template_args(values_files: Iterable[str], set_values: Iterable[str], kube_version: str) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", "cctv", "--kube-version", kube_version]
    for values_file in values_files:
        args += ["-f", values_file]
    for assignment in set_values:
        args += ["--set-json" if assignment.startswith("json:") else "--set", assignment.removeprefix("json:")]
    return args


@functools.cache
def _render_cached(
    values_files: tuple[str, ...], set_values: tuple[str, ...], kube_version: str
) -> tuple[dict[str, Any], ...]:
    result = run_helm(*_template_args(values_files, set_values, kube_version))
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(
    values_files: Iterable[str] = (), set_values: Iterable[str] = (), kube_version: str = "1.33.0"
) -> list[dict[str, Any]]:
    """Rendered manifests (deep copies, safe to modify)."""
    return copy.deepcopy(list(_render_cached(tuple(values_files), tuple(set_values), kube_version)))


def render_failure(set_values: Iterable[str]) -> str:
    result = run_helm(*_template_args((), set_values, "1.33.0"))
    assert result.returncode != 0, f"helm accepted bad values {list(set_values)}"
    return result.stderr


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def component_of(manifest: dict[str, Any]) -> str:
    return manifest["metadata"]["labels"]["app.kubernetes.io/component"]


def by_component(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {component_of(m): m for m in manifests if m["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


# --------------------------------------------------------------------------------------------
# helm lint and Kubernetes schema validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_strict_passes(value_set: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for values_file in VALUE_SETS[value_set]:
        args += ["-f", values_file]
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_manifest_is_valid_kubernetes(value_set: str, kube_version: str) -> None:
    manifests = render(VALUE_SETS[value_set], kube_version=kube_version)
    validated_kinds = set()
    for manifest in manifests:
        key = (manifest["apiVersion"], manifest["kind"])
        if key in CRD_KINDS_CHECKED_STRUCTURALLY:
            continue
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name} is invalid for Kubernetes {kube_version}: {error.message} at {list(error.path)}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{name}: {error.message} (a new CRD? add it to CRD_KINDS_CHECKED_STRUCTURALLY)")
        validated_kinds.add(manifest["kind"])
    expected = {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy", "Job", "Pod"}
    assert expected <= validated_kinds, f"kinds never validated: {expected - validated_kinds}"


def test_strict_validation_catches_an_unknown_field() -> None:
    """Negative control: the validator above really rejects a misspelt field."""
    deployment = next(m for m in render() if m["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.33.0", strict=True)


# --------------------------------------------------------------------------------------------
# values.schema.json: bad values fail with a message naming the key
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "expected_fragments"),
    [
        ("services.detector.replicas=-1", ["/services/detector/replicas", "minimum"]),
        ("bogus=1", ["additional properties 'bogus' not allowed"]),
        ("services.detector.replicaz=2", ["/services/detector", "additional properties 'replicaz'"]),
        ("log.level=LOUD", ["/log/level", "'DEBUG', 'INFO', 'WARNING', 'ERROR'"]),
        ("kafka.securityProtocol=TLS", ["/kafka/securityProtocol", "SASL_SSL"]),
        ("kafka.securityProtocol=SASL_SSL", ["/kafka/saslMechanism", "SCRAM-SHA-512"]),
        ("kafka.bootstrapServers=kafka", ["/kafka/bootstrapServers", "does not match pattern"]),
        ("services.ingest.resources.limits.cpu=lots", ["/services/ingest/resources/limits/cpu"]),
        ("services.detector.gpu.count=0", ["/services/detector/gpu/count", "minimum"]),
        ("services.frameSampler.autoscaling.lagThreshold=0", ["/services/frameSampler/autoscaling/lagThreshold"]),
        ("http.port=80", ["/http/port", "minimum"]),
        ("topicsJob.replicationFactor=0", ["/topicsJob/replicationFactor", "want 1"]),
        ("topicsJob.destinations={Police}", ["/topicsJob/destinations/0", "does not match pattern"]),
        ("registry.url=ftp://registry", ["/registry/url"]),
        ('json:config={"detector":{"max_batch":4}}', ["/config"]),
    ],
)
def test_schema_rejects_bad_values_with_the_key_in_the_message(assignment: str, expected_fragments: list[str]) -> None:
    message = render_failure([assignment])
    assert "values don't meet the specifications of the schema" in message
    for fragment in expected_fragments:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"


def test_sasl_with_mechanism_still_needs_a_secret() -> None:
    message = render_failure(["kafka.securityProtocol=SASL_SSL", "kafka.saslMechanism=SCRAM-SHA-512"])
    assert "/kafka/existingSecret" in message


def test_min_replicas_above_max_fails_with_a_clear_message() -> None:
    message = render_failure(
        ["services.detector.autoscaling.minReplicas=5", "services.detector.autoscaling.maxReplicas=2"]
    )
    assert "services.detector.autoscaling: minReplicas (5) must not exceed maxReplicas (2)" in message


# --------------------------------------------------------------------------------------------
# Workloads: hardening, probes, one Deployment per service
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_workload_runs_hardened_with_a_writable_tmp(value_set: str) -> None:
    manifests = render(VALUE_SETS[value_set])
    workloads = [m for m in manifests if m["kind"] in ("Deployment", "Job", "Pod")]
    assert len(workloads) >= 6
    for workload in workloads:
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        # Only the camera-controller talks to the Kubernetes API.
        talks_to_api = workload["metadata"]["labels"].get("app.kubernetes.io/component") == CONTROLLER
        assert spec["automountServiceAccountToken"] is talks_to_api, name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            tmp_mounts = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp_mounts) == 1, f"{name}: /tmp must be mounted (read-only root filesystem)"
            assert "emptyDir" in volumes[tmp_mounts[0]["name"]], name
            assert "resources" in container and container["resources"].get("limits"), name


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_each_service_has_its_deployment_with_health_probes(value_set: str) -> None:
    deployments = by_component(render(VALUE_SETS[value_set]), "Deployment")
    controller = deployments.pop(CONTROLLER, None)
    assert (controller is not None) == (value_set == "production"), "the controller runs when cameras.source=crds"
    assert sorted(deployments) == sorted(ENABLED[value_set])
    for component, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [f"cctv-{component}"]
        assert "command" not in container, "command would replace the image's tini entrypoint"
        assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["port"] == "http"
        config_file = env_of(container)["CCTV_CONFIG_FILE"]["value"]
        assert config_file == f"/etc/cctv/config/{component}.yaml"


def test_http_port_value_reaches_container_probes_env_and_scrape_annotation() -> None:
    manifests = render(set_values=["http.port=9100"])
    for deployment in of_kind(manifests, "Deployment").values():
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert container["ports"][0]["containerPort"] == 9100
        assert env_of(container)["CCTV_HTTP__PORT"]["value"] == "9100"
        assert template["metadata"]["annotations"]["prometheus.io/port"] == "9100"
        assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    for service in of_kind(manifests, "Service").values():
        assert service["spec"]["ports"][0]["port"] == 9100


def test_replicas_and_resources_are_per_service() -> None:
    manifests = render(
        set_values=[
            "services.ingest.replicas=7",
            "services.detector.resources.limits.memory=3Gi",
            "services.frameSampler.autoscaling.enabled=false",
            "services.frameSampler.replicas=3",
        ]
    )
    deployments = by_component(manifests, "Deployment")
    assert deployments["ingest"]["spec"]["replicas"] == 7
    assert deployments["frame-sampler"]["spec"]["replicas"] == 3
    detector = deployments["detector"]["spec"]["template"]["spec"]["containers"][0]
    assert detector["resources"]["limits"]["memory"] == "3Gi"
    ingest = deployments["ingest"]["spec"]["template"]["spec"]["containers"][0]
    assert ingest["resources"]["limits"]["memory"] == "1Gi"
    # An autoscaled Deployment leaves replicas to its autoscaler (upgrades must not reset them).
    assert "replicas" not in deployments["detector"]["spec"]


def test_clip_writer_takes_storage_credentials_and_signing_key_from_secrets() -> None:
    assert "clip-writer" not in by_component(render(), "Deployment")
    missing = run_helm(*_template_args((), ["services.clipWriter.enabled=true"], KUBERNETES_VERSIONS[-1]))
    assert missing.returncode != 0 and "evidence.s3.existingSecret" in missing.stderr
    manifests = render(VALUE_SETS["production"])
    spec = by_component(manifests, "Deployment")["clip-writer"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = env_of(container)
    assert env["CCTV_S3__ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "cctv-evidence-s3",
        "key": "access-key-id",
    }
    assert env["CCTV_S3__SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "cctv-evidence-s3"
    assert env["CCTV_S3__ENDPOINT_URL"]["value"] == "https://s3.storage.example.internal"
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["signing-key"]["secret"]["secretName"] == "cctv-evidence-signing-key"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "signing-key")
    assert mount["readOnly"] and env["CCTV_EVIDENCE__SIGNING_KEY_FILE"]["value"].startswith(mount["mountPath"] + "/")
    policies = of_kind(manifests, "NetworkPolicy")
    storage = policies[f"{RELEASE}-cctv-platform-clip-writer-storage"]
    assert storage["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "clip-writer"
    assert {p["port"] for p in storage["spec"]["egress"][0]["ports"]} == {443, 8333, 9000}
    assert env["CCTV_MASKED_COPIES__ENABLED"]["value"] == "true"
    # The console reads clips for its player (its own storage policy, no signing key); no other service
    # sees the signing key or the storage credentials.
    console = env_of(by_component(manifests, "Deployment")["console"]["spec"]["template"]["spec"]["containers"][0])
    assert console["CCTV_S3__SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "cctv-evidence-s3"
    assert not any(name.startswith("CCTV_EVIDENCE__") for name in console)
    reader = policies[f"{RELEASE}-cctv-platform-console-storage"]
    assert reader["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "console"
    for component, deployment in by_component(manifests, "Deployment").items():
        if component not in ("clip-writer", "console"):
            (other,) = deployment["spec"]["template"]["spec"]["containers"]
            assert not any(name.startswith(("CCTV_S3__", "CCTV_EVIDENCE__")) for name in env_of(other)), component


def test_disabled_service_renders_nothing_for_it() -> None:
    manifests = render(set_values=["services.alertRouter.enabled=false"])
    assert not [
        m for m in manifests if m["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "alert-router"
    ]
    assert "alert-router" not in by_component(manifests, "Deployment")


# --------------------------------------------------------------------------------------------
# Scaling: KEDA on consumer-group lag, HPA fallback
# --------------------------------------------------------------------------------------------


def test_keda_enabled_scales_consumers_on_their_group_lag_and_renders_no_hpa_for_them() -> None:
    manifests = render(set_values=["keda.enabled=true", "services.ingest.autoscaling.enabled=true"])
    scaled = by_component(manifests, "ScaledObject")
    assert sorted(scaled) == sorted(LAG_SCALED)
    deployments = by_component(manifests, "Deployment")
    for component, (group, topic) in LAG_SCALED.items():
        spec = scaled[component]["spec"]
        assert spec["scaleTargetRef"]["name"] == deployments[component]["metadata"]["name"]
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        assert metadata["consumerGroup"] == group
        assert metadata["topic"] == topic
        assert metadata["bootstrapServers"] == "kafka:9092"
        assert int(metadata["lagThreshold"]) >= 1
        assert all(isinstance(value, str) for value in metadata.values()), "KEDA metadata values are strings"
        assert "authenticationRef" not in trigger  # PLAINTEXT by default
    # Ingest is scaled on CPU (never on lag); KEDA's HPAs are its own, so none for the consumers.
    assert sorted(by_component(manifests, "HorizontalPodAutoscaler")) == ["ingest"]


def test_keda_disabled_falls_back_to_cpu_hpas() -> None:
    manifests = render(set_values=["keda.enabled=false"])
    assert not of_kind(manifests, "ScaledObject")
    hpas = by_component(manifests, "HorizontalPodAutoscaler")
    assert sorted(hpas) == sorted(LAG_SCALED)
    deployments = by_component(manifests, "Deployment")
    for component, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployments[component]["metadata"]["name"],
        }
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"


def test_keda_authenticates_to_secured_kafka_through_secret_references() -> None:
    manifests = render(VALUE_SETS["production"])
    (auth,) = of_kind(manifests, "TriggerAuthentication").values()
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": ("cctv-kafka", "username"),
        "password": ("cctv-kafka", "password"),
        "ca": ("cctv-kafka-ca", "ca.crt"),
    }
    for scaled_object in of_kind(manifests, "ScaledObject").values():
        (trigger,) = scaled_object["spec"]["triggers"]
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert trigger["metadata"]["sasl"] == "scram_sha512"
        assert trigger["metadata"]["tls"] == "enable"


# --------------------------------------------------------------------------------------------
# Credentials only through Secret references; config files per service
# --------------------------------------------------------------------------------------------


def test_credentials_come_only_from_existing_secrets() -> None:
    manifests = render(VALUE_SETS["production"])
    assert not of_kind(manifests, "Secret"), "the chart must never create Secrets with credentials"
    for workload in (m for m in manifests if m["kind"] in ("Deployment", "Job", "Pod")):
        for container in pod_spec(workload)["containers"]:
            env = env_of(container)
            expected = {
                "CCTV_KAFKA__SASL_USERNAME": ("cctv-kafka", "username"),
                "CCTV_KAFKA__SASL_PASSWORD": ("cctv-kafka", "password"),
                "CCTV_REGISTRY__USERNAME": ("cctv-registry", "username"),
                "CCTV_REGISTRY__PASSWORD": ("cctv-registry", "password"),
            }
            if workload["metadata"]["name"].endswith("-topics-create"):  # the schema writer (registry.writerSecret)
                expected |= {n: ("cctv-schema-writer", k) for n, (_s, k) in expected.items() if "REGISTRY" in n}
            for name, (secret, key) in expected.items():
                assert "value" not in env[name], f"{name} must not be inline"
                assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
            assert env["CCTV_KAFKA__SSL_CA_LOCATION"]["value"] == "/etc/cctv/kafka-ca/ca.crt"
    for config_map in of_kind(manifests, "ConfigMap").values():
        text = json.dumps(config_map["data"]).lower()
        assert "password" not in text and "sasl_username" not in text


def test_camera_credentials_reach_ingest_only_as_files_of_the_mounted_secret() -> None:
    # Files, not env vars: the kubelet updates a mounted Secret in place and ingest re-reads it.
    deployments = by_component(render(VALUE_SETS["production"]), "Deployment")
    pod = deployments["ingest"]["spec"]["template"]["spec"]
    ingest = pod["containers"][0]
    env = {e["name"]: e for e in ingest["env"]}
    assert env["CCTV_CREDENTIALS_DIR"]["value"] == "/etc/cctv/camera-credentials"
    mount = next(m for m in ingest["volumeMounts"] if m["name"] == "camera-credentials")
    assert mount == {"name": "camera-credentials", "mountPath": "/etc/cctv/camera-credentials", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "camera-credentials")
    assert volume["secret"]["secretName"] == "cctv-camera-credentials" and "envFrom" not in ingest
    for component in ("frame-sampler", "detector", "alert-router"):
        spec = deployments[component]["spec"]["template"]["spec"]
        assert "envFrom" not in spec["containers"][0]
        assert all(v["name"] != "camera-credentials" for v in spec["volumes"])


def test_each_service_reads_the_shared_config_plus_only_its_own_section() -> None:
    manifests = render(
        set_values=[
            'json:config={"kafka":{"extra":{"socket.keepalive.enable":"true"}}}',
            'json:services.detector.config={"model":{"score_threshold":0.4}}',
        ]
    )
    config_map = of_kind(manifests, "ConfigMap")[f"{RELEASE}-cctv-platform-config"]
    files = {name: yaml.safe_load(text) for name, text in config_map["data"].items()}
    # Every component has its file, enabled or not (the dispatcher and the share gateway are off by default
    # and in production).
    assert sorted(files) == sorted(
        ["common.yaml", *(f"{c}.yaml" for c in (*ALL_COMPONENTS, "dispatcher", "share-gateway"))]
    )
    shared = {"kafka": {"extra": {"socket.keepalive.enable": "true"}}}
    assert files["detector.yaml"] == {**shared, "model": {"score_threshold": 0.4}}
    for name in ("common.yaml", "ingest.yaml", "frame-sampler.yaml", "alert-router.yaml"):
        assert files[name] == shared, name
    # A config change rolls the pods (checksum annotation).
    before = by_component(render(), "Deployment")["detector"]["spec"]["template"]["metadata"]["annotations"]
    after = by_component(manifests, "Deployment")["detector"]["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]


# --------------------------------------------------------------------------------------------
# Detector GPU variant
# --------------------------------------------------------------------------------------------


def test_gpu_detector_requests_the_gpu_uses_the_gpu_image_and_lands_on_gpu_nodes() -> None:
    deployments = by_component(render(VALUE_SETS["production"]), "Deployment")
    detector = deployments["detector"]["spec"]["template"]["spec"]
    (container,) = detector["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["memory"] == "8Gi"
    assert container["image"] == "registry.example.org/cctv/cctv-platform:0.1.0-gpu"
    assert detector["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in detector["tolerations"]
    assert detector["runtimeClassName"] == "nvidia"
    volumes = {volume["name"]: volume for volume in detector["volumes"]}
    assert volumes["engine-cache"]["emptyDir"] == {"sizeLimit": "2Gi"}
    assert {"name": "engine-cache", "mountPath": "/var/cache/cctv/tensorrt"} in container["volumeMounts"]
    assert env_of(container)["CCTV_MODEL__TENSORRT_CACHE_DIR"]["value"] == "/var/cache/cctv/tensorrt"
    claimed = by_component(
        render(VALUE_SETS["production"], ["services.detector.gpu.engineCache.existingClaim=trt-engines"]), "Deployment"
    )["detector"]["spec"]["template"]["spec"]
    assert {v["name"]: v for v in claimed["volumes"]}["engine-cache"] == {
        "name": "engine-cache",
        "persistentVolumeClaim": {"claimName": "trt-engines"},
    }
    for component in ("ingest", "frame-sampler", "alert-router"):
        spec = deployments[component]["spec"]["template"]["spec"]
        assert spec["containers"][0]["image"] == "registry.example.org/cctv/cctv-platform:0.1.0"
        assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]
        assert "runtimeClassName" not in spec


def test_cpu_detector_by_default() -> None:
    detector = by_component(render(), "Deployment")["detector"]["spec"]["template"]["spec"]
    (container,) = detector["containers"]
    assert not any("gpu" in key for key in container["resources"]["limits"])
    assert not container["image"].endswith("-gpu")
    env = env_of(container)
    assert env["CCTV_MAX_BATCH"]["value"] == "8"
    assert env["CCTV_MAX_WAIT_MS"]["value"] == "50"
    assert "CCTV_MODEL__PATH" not in env  # the image's default model
    assert "CCTV_MODEL__TENSORRT_CACHE_DIR" not in env
    assert not any(volume["name"] == "engine-cache" for volume in detector["volumes"])


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_setting_the_chart_passes_is_read_by_its_service(
    value_set: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Deployment's environment and config file, loaded by the service's own settings class: an
    unknown variable or key would otherwise be ignored and a default quietly used."""
    manifests = render(
        VALUE_SETS[value_set],
        set_values=[
            'json:services.detector.config={"model":{"score_threshold":0.3}}',
            'json:services.alertRouter.config={"incidents":{"end_grace_s":20}}',
        ],
    )
    config_files = next(iter(of_kind(manifests, "ConfigMap").values()))["data"]
    values = yaml.safe_load(CHART.joinpath("values.yaml").read_text())["services"]["detector"]
    if value_set == "production":
        values |= yaml.safe_load(PRODUCTION_VALUES.read_text())["services"]["detector"]
    loaded: dict[str, Any] = {}
    mounts: dict[str, set[str]] = {}
    for component, deployment in by_component(manifests, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {name: item.get("value", "from-a-secret") for name, item in env_of(container).items()}
        config = yaml.safe_load(config_files[Path(env["CCTV_CONFIG_FILE"]).name])
        loaded[component] = load_as_deployed(component, env, config, tmp_path, monkeypatch)
        mounts[component] = {mount["mountPath"] for mount in container["volumeMounts"]}
    detector, router = loaded["detector"], loaded["alert-router"]
    assert (detector.max_batch, detector.max_wait_ms) == (values["maxBatch"], values["maxWaitMs"])
    assert detector.model.score_threshold == 0.3
    assert router.incidents.end_grace_s == 20
    # State and engine caches land on the volumes the chart mounts for them.
    assert any(str(router.data_dir).startswith(mount + "/") for mount in mounts["alert-router"]), router.data_dir
    if value_set == "production":  # the GPU detector
        assert str(detector.model.tensorrt_cache_dir) in mounts["detector"]


# --------------------------------------------------------------------------------------------
# Hooks, availability, monitoring, network
# --------------------------------------------------------------------------------------------


def test_topics_are_created_by_a_pre_install_hook_that_needs_no_release_objects() -> None:
    manifests = render()
    (job,) = of_kind(manifests, "Job").values()
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    spec = pod_spec(job)
    assert spec["containers"][0]["args"] == ["cctv", "topics", "create", "--scale", "1", "--replication-factor", "-1"]
    # Hooks run before the release's ordinary objects exist: the Job may only use hook objects.
    hook_config_maps = {
        name
        for name, cm in of_kind(manifests, "ConfigMap").items()
        if "helm.sh/hook" in cm["metadata"].get("annotations", {})
    }
    used = {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
    assert used and used <= hook_config_maps
    assert int(
        of_kind(manifests, "ConfigMap")[next(iter(used))]["metadata"]["annotations"]["helm.sh/hook-weight"]
    ) < int(annotations["helm.sh/hook-weight"])
    assert "serviceAccountName" not in spec  # the chart's ServiceAccount does not exist yet


def test_helm_test_pod_checks_the_topics() -> None:
    (pod,) = of_kind(render(), "Pod").values()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"] == ["cctv", "topics", "check"]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_production_topics_are_replicated_and_checked_for_every_destination() -> None:
    manifests = render(VALUE_SETS["production"])
    (job,) = of_kind(manifests, "Job").values()
    (pod,) = of_kind(manifests, "Pod").values()
    destinations = ["police", "fire", "disaster-management", "social-welfare"]
    destination_args = [arg for name in destinations for arg in ("--destination", name)]
    assert pod_spec(job)["containers"][0]["args"] == [
        "cctv",
        "topics",
        "create",
        "--scale",
        "4",
        "--replication-factor",
        "3",
        *destination_args,
    ]
    assert pod["spec"]["containers"][0]["args"] == ["cctv", "topics", "check", *destination_args]


def test_camera_inventory_is_applied_after_install_when_given() -> None:
    assert "cameras-apply" not in " ".join(of_kind(render(), "Job"))
    inventory = 'json:cameras.inventory={"cameras":[{"camera_id":"gate-1","stream_url":"rtsp://10.64.0.10/live"}]}'
    manifests = render(set_values=[inventory])
    job = of_kind(manifests, "Job")[f"{RELEASE}-cctv-platform-cameras-apply"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert pod_spec(job)["containers"][0]["args"] == ["cctv", "cameras", "apply", "-f", "/etc/cctv/config/cameras.yaml"]
    config_map = of_kind(manifests, "ConfigMap")[f"{RELEASE}-cctv-platform-config"]
    assert yaml.safe_load(config_map["data"]["cameras.yaml"])["cameras"][0]["camera_id"] == "gate-1"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_deployment_has_a_pdb_and_a_metrics_service(value_set: str) -> None:
    manifests = render(VALUE_SETS[value_set])
    deployments = by_component(manifests, "Deployment")
    pdbs = by_component(manifests, "PodDisruptionBudget")
    services = by_component(manifests, "Service")
    for component, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert pdbs[component]["spec"]["selector"]["matchLabels"] == selector
        assert "minAvailable" not in pdbs[component]["spec"], "minAvailable blocks drains at 1 replica"
        assert services[component]["spec"]["selector"] == selector
        assert services[component]["spec"]["ports"][0]["targetPort"] == "http"


def test_service_monitor_selects_the_metrics_services() -> None:
    manifests = render(VALUE_SETS["production"])
    (monitor,) = of_kind(manifests, "ServiceMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s for s in of_kind(manifests, "Service").values() if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert sorted(component_of(s) for s in selected) == sorted((*ALL_COMPONENTS, CONTROLLER))
    assert not of_kind(render(), "ServiceMonitor"), "ServiceMonitor needs the CRD: off by default"


def test_network_policy_allows_only_metrics_in_and_kafka_registry_dns_cameras_out() -> None:
    manifests = render(VALUE_SETS["production"])
    policies = of_kind(manifests, "NetworkPolicy")
    common = policies[f"{RELEASE}-cctv-platform"]["spec"]
    assert common["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = common["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    egress_ports = [sorted(p["port"] for p in rule["ports"]) for rule in common["egress"]]
    assert egress_ports == [[53, 53], [9093], [8443]]
    cameras = policies[f"{RELEASE}-cctv-platform-ingest-cameras"]["spec"]
    assert cameras["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "ingest"
    assert cameras["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.64.0.0/12"}}]
    assert not of_kind(render(set_values=["networkPolicy.enabled=false"]), "NetworkPolicy")


# --------------------------------------------------------------------------------------------
# Cameras as custom resources (cameras.source=crds)
# --------------------------------------------------------------------------------------------

CRD_FILE = CHART / "crds" / "cameras.cctv-platform.io.yaml"
CONTROLLER_NAME = f"{RELEASE}-cctv-platform-camera-controller"


def test_inventory_source_switch_renders_the_controller_only_for_crds() -> None:
    assert not [m for m in render() if m["metadata"]["name"].startswith(CONTROLLER_NAME)]
    manifests = render(set_values=["cameras.source=crds"])
    deployment = of_kind(manifests, "Deployment")[CONTROLLER_NAME]
    spec = pod_spec(deployment)
    assert spec["serviceAccountName"] == CONTROLLER_NAME
    (container,) = spec["containers"]
    assert container["args"] == ["cctv-camera-controller"]
    env = env_of(container)
    assert env["CCTV_CONTROLLER__NAMESPACE"]["value"] == "cctv"  # the release's namespace by default
    assert env["CCTV_CONTROLLER__IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert deployment["spec"]["replicas"] == 2
    failure = render_failure(
        [
            "cameras.source=crds",
            "cameras.inventory.cameras[0].camera_id=x",
            "cameras.inventory.cameras[0].stream_url=rtsp://h/x",
        ]
    )
    assert "cameras.inventory" in failure and "kubectl apply" in failure
    assert "/cameras/source" in render_failure(["cameras.source=etcd"])


def test_controller_rbac_is_least_privilege() -> None:
    manifests = render(VALUE_SETS["production"])
    roles = of_kind(manifests, "Role")
    cameras_rules = roles[f"{CONTROLLER_NAME}-cameras"]["rules"]
    assert {(tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in cameras_rules} == {
        (("cameras",), ("get", "list", "watch")),
        (("cameras/status",), ("get", "patch", "update")),
        (("events",), ("create", "patch")),
    }
    own_rules = roles[CONTROLLER_NAME]["rules"]
    secrets = [r for r in own_rules if "secrets" in r["resources"]]
    assert secrets == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["cctv-camera-credentials"], "verbs": ["get"]}
    ]
    leases = [r for r in own_rules if "leases" in r["resources"]]
    assert {tuple(r["verbs"]) for r in leases} == {("create",), ("get", "update")}
    assert all(r.get("resourceNames") == [CONTROLLER_NAME] for r in leases if "get" in r["verbs"])
    for rule in cameras_rules + own_rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
    assert not of_kind(manifests, "ClusterRole"), "one namespace needs no cluster-wide rights"
    bindings = of_kind(manifests, "RoleBinding")
    assert {b["subjects"][0]["name"] for b in bindings.values()} == {CONTROLLER_NAME}
    # Without a credentials Secret the controller may read no Secret at all.
    plain = of_kind(render(set_values=["cameras.source=crds"]), "Role")[CONTROLLER_NAME]["rules"]
    assert not [r for r in plain if "secrets" in r["resources"]]


def test_watching_every_namespace_takes_a_cluster_role_for_cameras_only() -> None:
    manifests = render(set_values=["cameras.source=crds", "cameras.controller.watchNamespace=*"])
    (cluster_role,) = of_kind(manifests, "ClusterRole").values()
    assert {res for r in cluster_role["rules"] for res in r["resources"]} == {"cameras", "cameras/status", "events"}
    env = env_of(pod_spec(of_kind(manifests, "Deployment")[CONTROLLER_NAME])["containers"][0])
    assert env["CCTV_CONTROLLER__NAMESPACE"]["value"] == ""
    assert env["CCTV_CONTROLLER__PLATFORM_NAMESPACE"]["value"] == "cctv"  # Lease and Secret stay home


def test_controller_may_reach_the_api_server_and_nothing_more() -> None:
    policies = of_kind(render(VALUE_SETS["production"]), "NetworkPolicy")
    policy = policies[CONTROLLER_NAME]["spec"]
    assert policy["policyTypes"] == ["Egress"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == CONTROLLER
    (rule,) = policy["egress"]
    assert sorted(p["port"] for p in rule["ports"]) == [443, 6443]
    assert rule["to"] == [{"ipBlock": {"cidr": "172.20.0.0/28"}}]


def test_camera_crd_is_shipped_where_helm_installs_crds() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    assert crd["metadata"]["name"] == "cameras.cctv-platform.io"
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert {"Status", "FPS", "Activity", "Last-Alert", "Age"} <= set(columns)
    result = run_helm("template", RELEASE, str(CHART), "--include-crds", "--set", "cameras.source=crds")
    assert result.returncode == 0, result.stderr
    assert "name: cameras.cctv-platform.io" in result.stdout


# --------------------------------------------------------------------------------------------
# The console: logins from a Secret, Ingress, who may reach it
# --------------------------------------------------------------------------------------------


def test_console_reads_users_and_session_key_from_its_secret(tmp_path: Path) -> None:
    import base64

    from services.console.users import hash_password, load_users

    password_hash = hash_password("a long dev password")
    users = {"kim": {"password_hash": password_hash, "role": "viewer", "cameras": ["gate-1"]}}
    manifests = render(set_values=[f"json:services.console.auth.users={json.dumps(users)}"])
    (secret,) = of_kind(manifests, "Secret").values()
    assert secret["metadata"]["name"] == f"{RELEASE}-cctv-platform-console-auth"
    key = base64.b64decode(secret["data"]["session-key"]).decode()
    assert len(key) == 48 and key.isalnum()
    users_file = tmp_path / "users.yaml"
    users_file.write_bytes(base64.b64decode(secret["data"]["users.yaml"]))
    users = load_users(users_file)
    assert users["kim"].role == "viewer" and users["kim"].cameras == ["gate-1"]
    console = by_component(manifests, "Deployment")["console"]["spec"]["template"]["spec"]
    (container,) = console["containers"]
    env = env_of(container)
    assert env["CCTV_HTTP__HOST"]["value"] == "0.0.0.0", "reachable through its Service"
    assert env["CCTV_USERS_FILE"]["value"] == "/etc/cctv/console-auth/users.yaml"
    assert env["CCTV_SESSION_KEY_FILE"]["value"] == "/etc/cctv/console-auth/session-key"
    assert env["CCTV_SECURE_COOKIES"]["value"] == "true"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "console-auth")
    assert mount == {"name": "console-auth", "mountPath": "/etc/cctv/console-auth", "readOnly": True}
    volume = next(v for v in console["volumes"] if v["name"] == "console-auth")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert by_component(manifests, "Deployment")["console"]["spec"]["replicas"] == 2
    assert not of_kind(manifests, "Ingress"), "the Ingress is opt-in"


def test_production_console_uses_an_existing_secret_behind_a_tls_ingress_only() -> None:
    manifests = render(VALUE_SETS["production"])
    console = by_component(manifests, "Deployment")["console"]["spec"]["template"]["spec"]
    volume = next(v for v in console["volumes"] if v["name"] == "console-auth")
    assert volume["secret"]["secretName"] == "cctv-console-auth"
    (ingress,) = of_kind(manifests, "Ingress").values()
    assert ingress["spec"]["tls"] == [{"hosts": ["console.cctv.example.org"], "secretName": "cctv-console-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{RELEASE}-cctv-platform-console", "port": {"name": "http"}}
    assert backend["name"] in of_kind(manifests, "Service")
    web = of_kind(manifests, "NetworkPolicy")[f"{RELEASE}-cctv-platform-console-web"]["spec"]
    assert web["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "console"
    assert web["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ('json:services.console.auth.users={"kim": {"password_hash": "$argon2id$x", "role": "god"}}', "role"),
        ('json:services.console.auth.users={"kim": {"password_hash": "plaintext", "role": "admin"}}', "password_hash"),
        ("services.console.auth.sessionKey=short", "sessionKey"),
    ],
)
def test_console_auth_values_are_checked(assignment: str, key: str) -> None:
    assert key in render_failure([assignment])


def test_each_service_logs_in_as_its_own_kafka_principal() -> None:
    """kafka.principalPerService: the least-privilege users of docs/security.md (Strimzi KafkaUsers in
    kafka-acls/), each password from the Secret named after its user; the jobs keep the admin Secret."""
    manifests = render(VALUE_SETS["production"], ["kafka.principalPerService=true"])
    users = {
        doc["metadata"]["name"] for doc in yaml.safe_load_all((CHART / "kafka-acls" / "kafka-users.yaml").read_text())
    }
    deployments = by_component(manifests, "Deployment")
    assert set(deployments) == {*ALL_COMPONENTS, CONTROLLER}
    for component, deployment in deployments.items():
        env = env_of(pod_spec(deployment)["containers"][0])
        assert env["CCTV_KAFKA__SASL_USERNAME"]["value"] == f"cctv-{component}" in users
        assert env["CCTV_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": f"cctv-{component}",
            "key": "password",
        }
    for job in of_kind(manifests, "Job").values():
        env = env_of(pod_spec(job)["containers"][0])
        assert env["CCTV_KAFKA__SASL_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == "cctv-kafka"


def test_dispatcher_reads_its_endpoints_from_the_config_map_and_secrets_as_files(tmp_path: Path) -> None:
    from services.alert_router.routing import RoutingTable

    assert "dispatcher" not in by_component(render(), "Deployment")  # off until endpoints are configured
    hook = "services.dispatcher.endpoints.police.webhooks[0]"
    manifests = render(
        set_values=[
            "services.dispatcher.enabled=true",
            "services.dispatcher.secretsSecret=cctv-webhooks",
            f"{hook}.name=hq",
            f"{hook}.url=https://112.example/hooks",
            f"{hook}.secret.file=/var/run/secrets/cctv-webhooks/police",
        ]
    )
    spec = by_component(manifests, "Deployment")["dispatcher"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["cctv-dispatcher"]
    routes_file = env_of(container)["CCTV_ROUTES_FILE"]["value"]
    config_map = of_kind(manifests, "ConfigMap")[f"{RELEASE}-cctv-platform-config"]
    endpoints_file = tmp_path / "endpoints.yaml"
    endpoints_file.write_text(config_map["data"][Path(routes_file).name])
    table = RoutingTable.from_yaml(endpoints_file)  # what the dispatcher will load validates
    assert table.endpoints["police"].webhooks[0].url == "https://112.example/hooks"
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["webhook-secrets"]["secret"]["secretName"] == "cctv-webhooks"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "webhook-secrets")
    assert mount["readOnly"] and str(table.endpoints["police"].webhooks[0].secret.file).startswith(mount["mountPath"])
    egress = of_kind(manifests, "NetworkPolicy")[f"{RELEASE}-cctv-platform-dispatcher-webhooks"]["spec"]["egress"]
    assert [p["port"] for p in egress[0]["ports"]] == [443]
    refused = render_failure(
        ["services.dispatcher.enabled=true", "services.dispatcher.endpoints.Police.webhooks[0].name=x"]
    )
    assert "'Police' does not match" in refused and "missing properties 'url', 'secret'" in refused


def test_share_gateway_serves_its_own_edge_apart_from_the_console_with_the_consoles_share_key() -> None:
    assert "share-gateway" not in by_component(render(), "Deployment")  # off unless asked for
    manifests = render(
        set_values=[
            "services.shareGateway.enabled=true",
            "services.shareGateway.ingress.enabled=true",
            "services.shareGateway.ingress.host=share.example.org",
            "services.shareGateway.ingress.tlsSecret=share-tls",
        ]
    )
    deployments = by_component(manifests, "Deployment")
    (gateway,) = deployments["share-gateway"]["spec"]["template"]["spec"]["containers"]
    assert gateway["args"] == ["cctv-share-gateway"]
    assert {p["name"]: p["containerPort"] for p in gateway["ports"]} == {"http": 8080, "edge": 8090}
    env = env_of(gateway)
    assert env["CCTV_EDGE__PORT"]["value"] == "8090"
    key_file = env["CCTV_SHARE_KEY_FILE"]["value"]
    (console,) = deployments["console"]["spec"]["template"]["spec"]["containers"]
    assert env_of(console)["CCTV_SHARES__KEY_FILE"]["value"] == key_file  # one key signs and checks links
    assert env_of(console)["CCTV_SHARES__GATEWAY_URL"]["value"] == "https://share.example.org"
    secret_name = f"{RELEASE}-cctv-platform-share-key"
    assert "share-key" in of_kind(manifests, "Secret")[secret_name]["data"]
    for name in ("share-gateway", "console"):
        volumes = {v["name"]: v for v in deployments[name]["spec"]["template"]["spec"]["volumes"]}
        assert volumes["share-key"]["secret"]["secretName"] == secret_name, name
    edge = of_kind(manifests, "Service")[f"{RELEASE}-cctv-platform-share-edge"]
    assert edge["spec"]["ports"] == [{"name": "edge", "port": 8090, "targetPort": "edge", "protocol": "TCP"}]
    ingress = of_kind(manifests, "Ingress")[f"{RELEASE}-cctv-platform-share-edge"]["spec"]
    assert ingress["rules"][0]["host"] == "share.example.org" and ingress["tls"][0]["secretName"] == "share-tls"
    assert ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"].endswith("share-edge")
    # The console's Ingress does not expose the video edge, nor the edge the console.
    assert all(
        "share" not in p["backend"]["service"]["name"]
        for i in of_kind(manifests, "Ingress").values()
        if i["metadata"]["name"].endswith("-console")
        for r in i["spec"]["rules"]
        for p in r["http"]["paths"]
    )
    own = render(
        set_values=["services.shareGateway.enabled=true", "services.shareGateway.shareKey.existingSecret=mine"]
    )
    assert f"{RELEASE}-cctv-platform-share-key" not in of_kind(own, "Secret")


def test_console_gateway_and_dispatcher_read_one_routing_file_for_agencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The share dialog's agencies and their `unmasked` flag come from the routing file the dispatcher
    delivers by, not from the image's default: all three load the same ConfigMap file."""
    from services.alert_router.routing import RoutingTable
    from services.share_gateway.core import UnmaskedPolicy

    manifests = render(
        set_values=[
            "services.shareGateway.enabled=true",
            "services.dispatcher.enabled=true",
            "services.dispatcher.endpoints.police.unmasked=true",
            "services.dispatcher.endpoints.fire.unmasked=false",
        ]
    )
    config_files = of_kind(manifests, "ConfigMap")[f"{RELEASE}-cctv-platform-config"]["data"]
    deployments = by_component(manifests, "Deployment")
    routes_files: dict[str, Path] = {}
    for component in ("console", "share-gateway", "dispatcher"):
        (container,) = deployments[component]["spec"]["template"]["spec"]["containers"]
        env = {name: item.get("value", "from-a-secret") for name, item in env_of(container).items()}
        config = yaml.safe_load(config_files[Path(env["CCTV_CONFIG_FILE"]).name])
        settings: Any = load_as_deployed(component, env, config, tmp_path, monkeypatch)
        routes_files[component] = settings.shares.routes_file if component == "console" else settings.routes_file
        mounted = {m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config"}
        assert str(routes_files[component].parent) in mounted, component
    assert len(set(routes_files.values())) == 1, routes_files
    # The file itself, as all three will load it.
    local = tmp_path / "routes.yaml"
    local.write_text(config_files[routes_files["dispatcher"].name])
    table = RoutingTable.from_yaml(local)
    assert {name: entry.unmasked for name, entry in table.endpoints.items()} == {"police": True, "fire": False}
    policy = UnmaskedPolicy(local)
    assert policy("police") and not policy("fire")
    # Without the dispatcher the gateway and console still get the file (the share dialog's agencies).
    alone = render(
        set_values=["services.shareGateway.enabled=true", "services.dispatcher.endpoints.police.unmasked=true"]
    )
    assert "dispatcher-endpoints.yaml" in of_kind(alone, "ConfigMap")[f"{RELEASE}-cctv-platform-config"]["data"]
