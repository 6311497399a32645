"""A real schema registry for development and tests: Apicurio Registry 2.6 (Confluent-compatible API
under /apis/ccompat/v7), storage in an H2 file under the project cache, bound to 127.0.0.1.

Apicurio publishes its complete, ready-to-run Quarkus distribution on Maven Central as
io.apicurio:apicurio-registry-app:<version>:tar.gz:all; Maven unpacks it once into the project cache
(registry_maven/README.md explains why not the plain jar, and what failed with 3.x on Java 17).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cctv.devstack.process import (
    DevStackError,
    LocalServer,
    cache_dir,
    port_open,
    read_pid,
)

__all__ = ["APICURIO_VERSION", "DevStackError", "SchemaRegistry"]

APICURIO_VERSION = "2.6.13.Final"
MAVEN_DIR = Path(__file__).with_name("registry_maven")
HOST = "127.0.0.1"


def registry_home() -> Path:
    return cache_dir() / "registry" / f"apicurio-registry-{APICURIO_VERSION}"


def runner_jar() -> Path:
    return registry_home() / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"


def ensure_distribution() -> Path:
    """Unpack the registry distribution from Maven Central unless already cached."""
    if runner_jar().is_file():
        return runner_jar()
    if shutil.which("mvn") is None:
        raise DevStackError(
            "Maven (mvn) is not installed: run `sudo apt-get install maven` or scripts/install-system-deps.sh"
        )
    command = [
        "mvn",
        "-B",
        "-q",
        "-s",
        str(MAVEN_DIR / "settings.xml"),
        "-f",
        str(MAVEN_DIR / "pom.xml"),
        "package",
        f"-Dregistry.home={registry_home()}",
        f"-Dapicurio.version={APICURIO_VERSION}",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0 or not runner_jar().is_file():
        raise DevStackError(f"Maven could not fetch Apicurio Registry: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return runner_jar()


@dataclass(frozen=True)
class SchemaRegistry(LocalServer):
    port: int = 8081
    name = "registry"

    @property
    def url(self) -> str:
        """What CCTV_REGISTRY__URL should be: the Confluent-compatible API."""
        return f"http://{HOST}:{self.port}/apis/ccompat/v7"

    @property
    def home(self) -> Path:
        return cache_dir() / "registry" / f"node-{self.port}"

    def ready(self) -> bool:
        if not port_open(HOST, self.port):
            return False
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def environment(self) -> dict[str, str]:
        # Schemas persist next to the broker's data: ids inside records stay resolvable after restarts.
        return dict(os.environ) | {"REGISTRY_DATASOURCE_URL": f"jdbc:h2:file:{self.home / 'db' / 'registry'}"}

    def prepare(self) -> list[str]:
        jar = ensure_distribution()
        return [
            "java",
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:ReservedCodeCacheSize=64m",
            "-Xss512k",
            f"-Dquarkus.http.host={HOST}",
            f"-Dquarkus.http.port={self.port}",
            f"-Djava.io.tmpdir={self.home}",
            "-Dquarkus.datasource.jdbc.initial-size=2",
            "-Dquarkus.datasource.jdbc.min-size=2",
            "-Dquarkus.datasource.jdbc.max-size=20",
            "-jar",
            str(jar),
        ]


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_local_broker(bootstrap: str, broker_port: int = 9092) -> bool:
    """`bootstrap` names the dev stack's broker on this machine, however the host is spelled."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host.lower() in LOCAL_HOSTS and port == str(broker_port)


def dev_stack_registry_url(bootstrap: str, broker_port: int = 9092, registry_port: int = 8081) -> str | None:
    """The local registry's URL when `bootstrap` is the local dev-stack broker (127.0.0.1 or localhost)
    and that registry runs (started by `cctv up` / `cctv registry start`, or answering on its port); else None.

    The dev stack's services frame records with the registry, so the CLI beside them must use it too."""
    registry = SchemaRegistry(port=registry_port)
    if not is_local_broker(bootstrap, broker_port):
        return None
    if read_pid(registry.pid_file) is None and not registry.ready():
        return None
    return registry.url


def local_stack_registry_url(bootstrap: str) -> str | None:
    """The registry of the `cctv up` running with this local broker (whatever its ports), else that of
    the default dev stack (9092 / 8081) when it runs; None for any other cluster."""
    from cctv.devstack.lock import holder

    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    if host.lower() in LOCAL_HOSTS and port.isdigit():
        running = holder(int(port))
        if running is not None and "registry_url" in running:
            url: str | None = running["registry_url"]
            return url
    return dev_stack_registry_url(bootstrap)
