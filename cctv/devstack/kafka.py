"""A real single-node Apache Kafka (KRaft, combined broker+controller) for development and tests.

The jars come from Maven Central (org.apache.kafka:kafka_2.13 and its dependencies) through Maven,
once, into the project cache; later starts are offline. Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from cctv.devstack.process import DevStackError, LocalServer, cache_dir, port_open

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("kafka_maven") / "pom.xml"
HOST = "127.0.0.1"


def jars_dir() -> Path:
    return cache_dir() / "kafka" / "lib"


def ensure_jars() -> Path:
    """Resolve Kafka's runtime jars with Maven unless already cached; returns the jar directory."""
    target = jars_dir()
    stamp = target / ".pom-sha256"
    wanted = hashlib.sha256(POM.read_bytes()).hexdigest()
    if target.is_dir() and stamp.is_file() and stamp.read_text() == wanted:
        return target
    if shutil.which("mvn") is None:
        raise DevStackError("Maven (mvn) is not installed: run `sudo apt-get install maven` or scripts/bootstrap.sh")
    partial = target.with_name("lib.partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
        "-DincludeScope=runtime",
    ]
    log.info("fetching Kafka jars from Maven Central into %s", target)
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise DevStackError(f"Maven could not fetch Kafka: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    (partial / ".pom-sha256").write_text(wanted)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


@dataclass(frozen=True)
class KafkaBroker(LocalServer):
    port: int = 9092
    controller_port: int | None = None  # default: port + 1
    name = "broker"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def home(self) -> Path:
        return cache_dir() / "kafka" / f"node-{self.port}"

    def _controller_port(self) -> int:
        return self.controller_port or self.port + 1

    def _properties(self) -> dict[str, str]:
        """server.properties; a secured broker (cctv/devstack/secure_kafka.py) overrides the listeners."""
        data = self.home / "data"
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self._controller_port()}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self._controller_port()}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "3",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "12",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Tests and `make run` create topics explicitly; typos must fail loudly.
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(16 * 1024 * 1024),
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }

    def _format_args(self) -> list[str]:
        """Extra `kafka-storage format` arguments (e.g. SCRAM users for a secured broker)."""
        return []

    def client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka properties of an administrator connection to this broker."""
        return {"bootstrap.servers": self.bootstrap}

    def _write_config(self) -> Path:
        config = self.home / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in self._properties().items()))
        (self.home / "log4j2.properties").write_text(
            "rootLogger.level=INFO\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\nappender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.kafka.name=kafka\nlogger.kafka.level=WARN\nlogger.apache.name=org.apache.kafka\n"
            "logger.apache.level=WARN\n"
        )
        return config

    def _java(self, main_class: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            str(jars_dir() / "*"),
            main_class,
            *args,
        ]

    def ready(self, timeout_s: float = 2.0) -> bool:
        """The broker answers a metadata request."""
        from confluent_kafka.admin import AdminClient

        if not port_open(HOST, self.port):
            return False
        try:
            AdminClient(self.client_config()).list_topics(timeout=timeout_s)
            return True
        except Exception:  # noqa: BLE001 — any failure means not ready
            return False

    answers_metadata = ready

    def prepare(self) -> list[str]:
        ensure_jars()
        config = self._write_config()
        if not (self.home / "data" / "meta.properties").exists():
            result = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    _random_cluster_id(),
                    "-c",
                    str(config),
                    *self._format_args(),
                ),
                check=False,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise DevStackError(f"formatting KRaft storage failed: {result.stdout}{result.stderr}")
        return self._java("kafka.Kafka", str(config))


def _random_cluster_id() -> str:
    """A KRaft cluster id as Kafka's own Uuid.randomUuid makes it: never starting with '-', which the
    storage tool's argument parser would take for an option (1 format in 64 failed with "expected one
    argument")."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
