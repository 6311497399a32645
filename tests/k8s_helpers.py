"""kubectl against the test session's real API server: apply, wait on conditions, ServiceAccount tokens."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from cctv.devstack.k8s import KubeControlPlane, bin_dir
from tests.kafka_helpers import wait_for

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "cctv-platform"
CRD_FILE = CHART / "crds" / "cameras.cctv-platform.io.yaml"
HELM = REPO / ".cache" / "bin" / "helm"


def kubectl_binary() -> str:
    """The installed kubectl, else the one scripts/build-k8s.sh built next to the API server."""
    built = bin_dir() / "kubectl"
    return "kubectl" if shutil.which("kubectl") or not built.is_file() else str(built)


class Kubectl:
    def __init__(self, api: KubeControlPlane, kubeconfig: Path | None = None) -> None:
        self.api = api
        self.kubeconfig = kubeconfig or api.kubeconfig

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def apply(
        self, manifest: dict[str, Any] | str, *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.run("apply", "-f", "-", *extra, stdin=text, check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def namespace(self, prefix: str) -> str:
        """A fresh namespace, returned once its `default` ServiceAccount exists (pods need it)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.run("create", "namespace", name)
        wait_for(
            lambda: self.run("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
            60,
            f"the default ServiceAccount of {name} (made by kube-controller-manager)",
        )
        return name

    def install_crd(self) -> None:
        self.run("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
        self.run("wait", "--for=condition=Established", "--timeout=60s", "crd/cameras.cctv-platform.io")

    def token_kubeconfig(self, namespace: str, service_account: str, directory: Path) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount (TokenRequest API), as its pod would."""
        token = self.run("create", "token", service_account, "-n", namespace, "--duration=1h").stdout.strip()
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [{"name": service_account, "user": {"token": token}}]
        config["contexts"] = [
            {"name": "sa", "context": {"cluster": "local", "user": service_account, "namespace": namespace}}
        ]
        config["current-context"] = "sa"
        path = directory / f"{service_account}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def helm_template(namespace: str, *args: str) -> str:
    result = subprocess.run(
        [str(HELM), "template", "cctv", str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def manifests_of(text: str, kinds: set[str]) -> str:
    """Only the documents of the given kinds (e.g. the controller's RBAC), as one YAML stream."""
    docs = [d for d in yaml.safe_load_all(text) if d and d["kind"] in kinds]
    return yaml.safe_dump_all(docs)
