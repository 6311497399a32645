"""A real S3-compatible object store for development and tests: SeaweedFS (`weed server -s3`), bound to
127.0.0.1, with one S3 identity so every request needs credentials (anonymous requests are refused).

The `weed` binary is built from the Go module proxy by scripts/install-seaweedfs.sh and cached outside
the clone (${CCTV_S3_CACHE:-~/.cache/cctv-s3}), so a fresh clone on the same machine reuses it; the
server's data lives in the project cache next to the broker's.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cctv.devstack.process import (
    DevStackError,
    LocalServer,
    cache_dir,
    port_open,
    read_pid,
    spawn,
    stop_pid,
    wait_until,
)

HOST = "127.0.0.1"
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-seaweedfs.sh"
# Development credentials of the local store only (deployments take theirs from a Secret).
DEV_ACCESS_KEY = "cctv-dev"
DEV_SECRET_KEY = "cctv-dev-secret-change-me"


def s3_cache() -> Path:
    configured = os.environ.get("CCTV_S3_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "cctv-s3"


def weed_binary() -> Path:
    return s3_cache() / "bin" / "weed"


def ensure_binary(build: bool = True) -> Path:
    """The cached `weed` binary; builds it (≈10 min cold on 2 cores) when missing and `build` is set."""
    binary = weed_binary()
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    if not build:
        raise DevStackError(f"SeaweedFS is not built yet: run `bash {INSTALL_SCRIPT}` (or `make test`)")
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], check=False, capture_output=True, text=True)
    if result.returncode != 0 or not binary.is_file():
        raise DevStackError(f"building SeaweedFS failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return binary


READY_PROBE_BUCKET = "cctv-ready-probe"  # the readiness check writes one small object here


@dataclass(frozen=True)
class ObjectStore(LocalServer):
    """SeaweedFS master, volume, filer and S3 gateway in one process; `port` is the S3 port, the others
    derive from it (port+1 master, port+2 volume, port+3 filer, plus their gRPC ports +10000)."""

    port: int = 8333
    access_key: str = DEV_ACCESS_KEY
    secret_key: str = DEV_SECRET_KEY
    name = "s3"

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def home(self) -> Path:
        return cache_dir() / "s3" / f"node-{self.port}"

    def ready(self) -> bool:
        """An authenticated ListBuckets succeeds and a small object can be written (the S3 gateway and filer
        answer, and a volume server has registered with the master: after a restart over existing data,
        reads work seconds before writes do)."""
        if not port_open(HOST, self.port):
            return False
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 1}),
        )
        try:
            if READY_PROBE_BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
                client.create_bucket(Bucket=READY_PROBE_BUCKET)
            client.put_object(Bucket=READY_PROBE_BUCKET, Key="probe", Body=b"ready")
            return True
        except (BotoCoreError, ClientError):
            return False

    def _identities(self) -> Path:
        config = self.home / "s3-identities.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "cctv",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        return config

    def prepare(self) -> list[str]:
        binary = ensure_binary()
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        return [
            str(binary),
            "server",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={self.port + 1}",
            f"-volume.port={self.port + 2}",
            f"-filer.port={self.port + 3}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            "-s3",
            f"-s3.port={self.port}",
            # Off: the Iceberg and Lance catalogs would listen on fixed ports (8181, 9101: a metrics port
            # of the dev stack) that no caller of ours uses.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self._identities()}",
        ]

    def start(self, timeout_s: float = 60.0) -> str:
        """Start unless already running; returns 'started' or 'already running'."""
        if read_pid(self.pid_file) is not None or port_open(HOST, self.port):
            if not wait_until(self.ready, timeout_s):
                raise DevStackError(f"port {self.port} is taken by something that is not a ready S3 server")
            return "already running"
        self.home.mkdir(parents=True, exist_ok=True)
        spawn(self.prepare(), self.log_file, self.pid_file)
        if not wait_until(self.ready, timeout_s, interval_s=0.3):
            tail = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
            self.stop()
            raise DevStackError(f"S3 server not ready within {timeout_s:.0f} s; log tail:\n{tail}")
        return "started"

    def stop(self) -> bool:
        # SeaweedFS takes >10 s to stop on SIGTERM; SIGKILL after 20 s loses nothing acknowledged.
        return stop_pid(self.pid_file, timeout_s=20)


def start_local_object_store(say: Callable[[str], None]) -> tuple[ObjectStore, dict[str, str]] | None:
    """For `cctv up`: the local S3 store, when SeaweedFS is built (`make s3`), and the clip-writer's
    environment for it (the manifest signing key is created once in the project cache). Returns None
    (and says why) otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not weed_binary().is_file():
        say(f"evidence clips off: SeaweedFS not built (run `make s3`, ~10 min once; it goes to {weed_binary()})")
        return None
    store = ObjectStore()
    say(f"S3 object store {store.start()} at {store.endpoint} (evidence clips)")
    key_file = cache_dir() / "evidence" / "signing-key.pem"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_file.chmod(0o600)
    return store, {
        "CCTV_S3__ENDPOINT_URL": store.endpoint,
        "CCTV_S3__ACCESS_KEY_ID": store.access_key,
        "CCTV_S3__SECRET_ACCESS_KEY": store.secret_key,
        "CCTV_EVIDENCE__SIGNING_KEY_FILE": str(key_file),
    }
