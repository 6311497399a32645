"""The Camera CRD, the controller's RBAC and the chart against a real kube-apiserver (+ etcd)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from cctv.devstack.k8s import KubeControlPlane
from cctv.inventory import parse_yaml
from libs.cameras import CameraEntry
from services.camera_controller.core import from_entry
from tests.k8s_helpers import CHART, HELM, Kubectl, helm_template, manifests_of

REPO = Path(__file__).resolve().parents[1]
SAMPLE_INVENTORY = (
    (REPO / "samples" / "cameras.yaml")
    .read_text()
    .replace("{repo}", str(REPO))
    .replace("{rtsp}", "rtsp://127.0.0.1:8554/campus")
)
CONTROLLER_SA = "cctv-cctv-platform-camera-controller"
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
# Kinds of operators the chart can use but a bare API server does not serve (KEDA, Prometheus Operator).
THIRD_PARTY_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


@pytest.fixture(scope="module")
def kubectl(kube_api: KubeControlPlane) -> Kubectl:
    kubectl = Kubectl(kube_api)
    kubectl.install_crd()
    return kubectl


def camera(name: str, namespace: str, **spec) -> dict:
    return {
        "apiVersion": "cctv-platform.io/v1",
        "kind": "Camera",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"streamUrl": "rtsp://10.64.0.10/live", **spec},
    }


def test_inventory_entries_are_admitted_as_cameras_with_defaults_and_columns(kubectl: Kubectl) -> None:
    namespace = kubectl.namespace("crd")
    entries = parse_yaml(SAMPLE_INVENTORY) + [
        CameraEntry(
            camera_id="Gate_7:north",
            stream_url="rtsp://10.64.0.7/live",
            credentials_ref="GATE_7",
            location={"lat": 37.5, "lon": 127.0},
            tags=["park"],
            sampling={"mode": "fps", "fps": 2},
        )
    ]
    for entry in entries:
        manifest = from_entry(entry, namespace, credentials_secret="cctv-camera-credentials")
        kubectl.apply(manifest, "--dry-run=server")
    kubectl.apply(camera("lobby", namespace))
    stored = kubectl.get("camera", "lobby", namespace)
    assert stored is not None
    # Schema defaults are applied at admission, the same defaults as the CameraConfig model.
    assert {k: stored["spec"][k] for k in ("rtspTransport", "loop", "realtime", "timezone", "enabled")} == {
        "rtspTransport": "tcp",
        "loop": False,
        "realtime": True,
        "timezone": "Asia/Seoul",
        "enabled": True,
    }
    table = kubectl.run("get", "cameras", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "FPS", "ACTIVITY", "LAST-ALERT", "AGE"]
    assert table[1].startswith("lobby")
    assert "lobby" in kubectl.run("get", "cams", "-A").stdout  # short name, across namespaces


INVALID = [
    ({"streamUrl": "rtsp://admin:secret@10.0.0.1/live"}, "must not carry user:password"),
    ({"streamUrl": "ftp://10.0.0.1/live"}, "spec.streamUrl"),
    ({"sampling": {"mode": "fps"}}, "sampling mode 'fps' needs a rate"),
    ({"sampling": {"mode": "fps", "fps": 0}}, "spec.sampling.fps"),
    (
        {"zones": [{"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "rules": [{"type": "line_crossing"}]}]},
        "line_crossing rule needs line",
    ),
    (
        {"zones": [{"name": "z", "polygon": [[0, 0], [1, 0]], "rules": [{"type": "intrusion"}]}]},
        "spec.zones[0].polygon",
    ),
    ({"zones": [{"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "rules": []}]}, "spec.zones[0].rules"),
    (
        {
            "zones": [
                {"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "rules": [{"type": "intrusion"}]},
                {"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "rules": [{"type": "running"}]},
            ]
        },
        "Duplicate value",
    ),
    ({"credentialsSecretRef": {"name": "cctv-camera-credentials", "key": "has-dash"}}, "spec.credentialsSecretRef.key"),
    ({"location": {"lat": 91, "lon": 0}}, "spec.location.lat"),
    ({"rtspTransport": "quic"}, "spec.rtspTransport"),
]


@pytest.mark.parametrize(("spec", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_cameras_are_rejected_at_admission_with_a_clear_message(
    kubectl: Kubectl, spec: dict, message: str
) -> None:
    result = kubectl.apply(camera("bad", "default", **spec), "--dry-run=server", check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_camera_id_is_immutable(kubectl: Kubectl) -> None:
    namespace = kubectl.namespace("immutable")
    kubectl.apply(camera("gate", namespace, cameraId="GATE-1"))
    result = kubectl.apply(camera("gate", namespace, cameraId="GATE-2"), check=False)
    assert result.returncode != 0 and "cameraId is immutable" in result.stderr
    assert kubectl.apply(camera("gate", namespace, cameraId="GATE-1", siteId="s-1")).returncode == 0


def test_controller_service_account_gets_only_what_the_chart_grants(kubectl: Kubectl, tmp_path: Path) -> None:
    namespace = kubectl.namespace("rbac")
    rendered = helm_template(
        namespace, "--set", "cameras.source=crds", "--set", "cameraCredentials.existingSecret=cctv-camera-credentials"
    )
    kubectl.apply(manifests_of(rendered, RBAC_KINDS), "-n", namespace)
    kubectl.run(
        "create", "secret", "generic", "cctv-camera-credentials", "-n", namespace, "--from-literal=GATE_1=viewer:pw"
    )
    kubectl.run("create", "secret", "generic", "kafka-admin", "-n", namespace, "--from-literal=password=pw")
    kubectl.apply(camera("mine", namespace))
    other = kubectl.namespace("rbac-other")
    kubectl.apply(camera("elsewhere", other))
    as_controller = Kubectl(kubectl.api, kubectl.token_kubeconfig(namespace, CONTROLLER_SA, tmp_path))

    def allowed(*args: str) -> bool:
        result = as_controller.run(*args, check=False)
        assert result.returncode == 0 or "forbidden" in result.stderr.lower(), result.stderr
        return result.returncode == 0

    assert allowed("get", "secret", "cctv-camera-credentials", "-n", namespace)
    assert not allowed("get", "secret", "kafka-admin", "-n", namespace)
    assert not allowed("get", "secrets", "-n", namespace)  # no list: it cannot discover other Secrets
    assert not allowed("get", "secret", "cctv-camera-credentials", "-n", other)
    assert allowed("get", "cameras", "-n", namespace)
    assert not allowed("get", "cameras", "-n", other)
    assert not allowed("delete", "cameras", "--all", "-n", namespace)
    assert not allowed("get", "pods", "-n", namespace)
    assert allowed("auth", "can-i", "patch", "cameras.cctv-platform.io", "--subresource=status", "-n", namespace)
    can_i = as_controller.run("auth", "can-i", "update", "cameras.cctv-platform.io", "-n", namespace, check=False)
    assert can_i.stdout.strip() == "no", "spec edits belong to operators, not the controller"


@pytest.mark.parametrize("value_set", ["default", "production"])
def test_chart_passes_server_side_dry_run(kubectl: Kubectl, value_set: str) -> None:
    namespace = kubectl.namespace(f"dry-{value_set}")
    args = ["-f", str(CHART / "values-production.yaml")] if value_set == "production" else []
    rendered = helm_template(namespace, *args)
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    third_party = [d for d in docs if d["apiVersion"].startswith(THIRD_PARTY_GROUPS)]
    served = [d for d in docs if d not in third_party]
    if value_set == "production":
        assert {d["kind"] for d in third_party} == {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}
        assert any(d["metadata"]["name"].endswith("camera-controller") and d["kind"] == "Deployment" for d in served)
    else:
        assert not third_party
    result = kubectl.run(
        "apply", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-", stdin=yaml.safe_dump_all(served)
    )
    applied = json.loads(result.stdout)
    items = applied.get("items", [applied])
    assert len(items) == len(served)


def test_helm_install_with_crds_source_then_kubectl_get_cameras(kubectl: Kubectl) -> None:
    """A real `helm install` (no hooks: their Jobs would wait for a kubelet this cluster has not got)."""
    namespace = kubectl.namespace("install")
    kubeconfig = str(kubectl.kubeconfig)
    result = subprocess.run(
        [
            str(HELM),
            "install",
            "cctv-platform",
            str(CHART),
            "-n",
            namespace,
            "--kubeconfig",
            kubeconfig,
            "--no-hooks",
            "--set",
            "cameras.source=crds",
            "--set",
            "cameraCredentials.existingSecret=cctv-camera-credentials",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    try:
        deployments = kubectl.run("get", "deploy", "-n", namespace, "-o", "name").stdout.split()
        assert "deployment.apps/cctv-platform-camera-controller" in deployments
        kubectl.apply(camera("gate-1", namespace))
        listed = kubectl.run("get", "cameras", "-A").stdout
        assert listed.split()[:7] == ["NAMESPACE", "NAME", "STATUS", "FPS", "ACTIVITY", "LAST-ALERT", "AGE"]
        assert f"{namespace}   gate-1" in listed or any(
            line.split()[:2] == [namespace, "gate-1"] for line in listed.splitlines()
        )
    finally:
        subprocess.run(
            [str(HELM), "uninstall", "cctv-platform", "-n", namespace, "--kubeconfig", kubeconfig, "--no-hooks"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    # Helm never deletes CRDs (nor the Cameras): uninstalling the platform keeps the inventory's source.
    assert kubectl.get("camera", "gate-1", namespace) is not None
