"""A real Kubernetes control plane on 127.0.0.1 for tests and development: etcd + kube-apiserver
(+ kube-controller-manager for ServiceAccounts, namespace deletion, garbage collection and the
aggregated roles). No kubelet or scheduler: Pods stay Pending, which is all an operator's tests need.

Binaries come from scripts/build-k8s.sh (built once per machine from the Go module proxy into
~/.cache/cctv-k8s, outside the clone). State (etcd data, PKI, kubeconfig, logs) lives per API port
under that cache, so a second start reuses what runs.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cctv.devstack.process import (
    DevStackError,
    port_open,
    read_pid,
    repo_root,
    spawn,
    stop_pid,
    wait_until,
)

K8S_VERSION = os.environ.get("K8S_VERSION", "1.37.2")
HOST = "127.0.0.1"
# kube-controller-manager controllers worth running without nodes.
CONTROLLERS = (
    "serviceaccount-controller,namespace-controller,garbage-collector-controller,"
    "root-ca-certificate-publisher-controller,clusterrole-aggregation-controller,"
    "deployment-controller,replicaset-controller"
)


def k8s_cache() -> Path:
    configured = os.environ.get("CCTV_K8S_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "cctv-k8s"


def bin_dir() -> Path:
    return k8s_cache() / f"bin-v{K8S_VERSION}"


def ensure_binaries() -> Path:
    """Build etcd/kube-apiserver/kube-controller-manager unless cached (a one-time ~15 min)."""
    binaries = bin_dir()
    if all((binaries / name).is_file() for name in ("etcd", "kube-apiserver", "kube-controller-manager")):
        return binaries
    script = repo_root() / "scripts" / "build-k8s.sh"
    result = subprocess.run(["bash", str(script)], check=False, env=os.environ | {"K8S_VERSION": K8S_VERSION})
    if result.returncode != 0:
        raise DevStackError(f"building the Kubernetes control plane failed; run {script} to see why")
    return binaries


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], check=False, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DevStackError(f"openssl {args[0]} failed: {result.stderr[-500:]}")


@dataclass(frozen=True)
class KubeControlPlane:
    port: int = 16443  # kube-apiserver's HTTPS port
    etcd_port: int | None = None  # default: port + 1; etcd's peer port is port + 2
    controller_manager: bool = True

    @property
    def home(self) -> Path:
        return k8s_cache() / f"run-{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.home / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def _etcd(self) -> int:
        return self.etcd_port or self.port + 1

    def _pki(self) -> Path:
        pki = self.home / "pki"
        if (pki / "tokens.csv").is_file():
            return pki
        pki.mkdir(parents=True, exist_ok=True)
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=cctv-test-ca",
            cwd=pki,
        )
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "apiserver.key",
            "-out",
            "apiserver.csr",
            "-subj",
            "/CN=kube-apiserver",
            cwd=pki,
        )
        (pki / "apiserver.ext").write_text(
            "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "apiserver.crt",
            "-days",
            "3650",
            "-extfile",
            "apiserver.ext",
            cwd=pki,
        )
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
        token = os.urandom(16).hex()
        (pki / "tokens.csv.tmp").write_text(f"admin-{token},admin,admin-uid,system:masters\n")
        for key in pki.glob("*.key"):
            key.chmod(0o600)
        (pki / "tokens.csv.tmp").chmod(0o600)
        (pki / "tokens.csv.tmp").rename(pki / "tokens.csv")
        return pki

    @property
    def admin_token(self) -> str:
        return (self.home / "pki" / "tokens.csv").read_text().split(",")[0]

    def ready(self) -> bool:
        if not (self.home / "pki" / "ca.crt").is_file():
            return False
        context = ssl.create_default_context(cafile=str(self.home / "pki" / "ca.crt"))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return response.read() == b"ok"
        except OSError:
            return False

    def _write_kubeconfig(self, pki: Path) -> None:
        import base64

        ca = base64.b64encode((pki / "ca.crt").read_bytes()).decode()
        text = (
            f"apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {self.admin_token}\n"
            "contexts:\n- name: local\n  context: {cluster: local, user: admin, namespace: default}\n"
            "current-context: local\n"
        )
        self.kubeconfig.write_text(text)
        self.kubeconfig.chmod(0o600)

    def start(self, timeout_s: float = 180.0) -> str:
        """Start etcd, kube-apiserver and the controller-manager unless running; 'started' or 'already running'."""
        if read_pid(self.home / "kube-apiserver.pid") is not None or port_open(HOST, self.port):
            if not wait_until(self.ready, timeout_s, interval_s=0.5):
                raise DevStackError(f"port {self.port} is taken by something that is not a ready kube-apiserver")
            self._start_controller_manager(ensure_binaries(), self.home / "pki")
            return "already running"
        binaries = ensure_binaries()
        self.home.mkdir(parents=True, exist_ok=True)
        pki = self._pki()
        logs = self.home / "logs"
        if read_pid(self.home / "etcd.pid") is None:
            spawn(
                [
                    str(binaries / "etcd"),
                    "--name",
                    "cctv",
                    "--data-dir",
                    str(self.home / "etcd-data"),
                    "--listen-client-urls",
                    f"http://{HOST}:{self._etcd}",
                    "--advertise-client-urls",
                    f"http://{HOST}:{self._etcd}",
                    "--listen-peer-urls",
                    f"http://{HOST}:{self._etcd + 1}",
                    "--initial-advertise-peer-urls",
                    f"http://{HOST}:{self._etcd + 1}",
                    "--initial-cluster",
                    f"cctv=http://{HOST}:{self._etcd + 1}",
                    "--quota-backend-bytes=2147483648",
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
                logs / "etcd.log",
                self.home / "etcd.pid",
            )
        issuer = "https://kubernetes.default.svc.cluster.local"
        spawn(
            [
                str(binaries / "kube-apiserver"),
                f"--etcd-servers=http://{HOST}:{self._etcd}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                f"--secure-port={self.port}",
                "--endpoint-reconciler-type=none",  # required with a loopback advertise address
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={issuer}",
                f"--api-audiences={issuer}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--profiling=false",
            ],
            logs / "kube-apiserver.log",
            self.home / "kube-apiserver.pid",
        )
        if not wait_until(self.ready, timeout_s, interval_s=0.3):
            tail = (logs / "kube-apiserver.log").read_text(errors="replace")[-3000:]
            self.stop()
            raise DevStackError(f"kube-apiserver not ready within {timeout_s:.0f} s; log tail:\n{tail}")
        self._write_kubeconfig(pki)
        self._start_controller_manager(binaries, pki)
        return "started"

    def _start_controller_manager(self, binaries: Path, pki: Path) -> None:
        if not self.controller_manager or read_pid(self.home / "kube-controller-manager.pid") is not None:
            return
        spawn(
            [
                str(binaries / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={CONTROLLERS}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
            ],
            self.home / "logs" / "kube-controller-manager.log",
            self.home / "kube-controller-manager.pid",
        )

    def stop(self, purge: bool = False) -> bool:
        stopped = False
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            stopped = stop_pid(self.home / f"{name}.pid", timeout_s=30) or stopped
        if purge:
            import shutil

            shutil.rmtree(self.home, ignore_errors=True)
        return stopped
