"""A pipeline under test for fault runs: its own broker, one RTSP server per camera, the four pipeline
services as real processes (kill -9 and restart any of them), and probes that read the topics."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from cctv.devstack.kafka import KafkaBroker
from cctv.devstack.rtsp import RtspServerHandle, start_rtsp_server
from cctv.devstack.services import PIPELINE_SERVICES, ServiceProcess
from cctv.inventory import publish
from libs.cameras import CameraEntry, Sampling
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import ALERTS, DETECTIONS, FRAMES, VIDEO_PACKETS, pipeline_topics

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "vtest-h264.mp4"
ROAD = [[0.30, 0.30], [0.90, 0.20], [0.99, 0.42], [0.55, 0.64], [0.30, 0.52]]  # where people walk in the sample
# Each service's input topic: it has caught up once its group committed past what was there.
INPUT_OF = {"frame-sampler": VIDEO_PACKETS, "detector": FRAMES, "alert-router": DETECTIONS}
GRACEFUL_STOP_S = 60.0


class ChaosError(AssertionError):
    """A fault run could not go on (a service died for good, the pipeline did not recover in time)."""


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def camera_entries(count: int, urls: list[str], fps: float) -> list[CameraEntry]:
    """Cameras watching the sample's road; file:// URLs loop the file in real time."""
    return [
        CameraEntry(
            camera_id=f"chaos-{index}",
            name=f"Chaos camera {index}",
            site_id="chaos",
            stream_url=url,
            loop=url.startswith("file://"),
            realtime=True,
            tags=["crime-hotspot"],
            sampling=Sampling(mode="fps", fps=fps, heartbeat_s=10),
            zones=[{"name": "road", "polygon": ROAD, "rules": [{"type": "intrusion"}]}],
        )
        for index, url in zip(range(count), urls, strict=True)
    ]


@dataclass
class ChaosStack:
    workdir: Path
    broker_port: int
    cameras: int = 2
    fps: float = 1.0
    end_grace_s: float = 10.0
    rtsp: bool = True  # one RTSP server per camera (a camera can be dropped); else file cameras (cheap)
    extra_env: dict[str, str] = field(default_factory=dict)
    broker: KafkaBroker = field(init=False)
    servers: list[RtspServerHandle] = field(default_factory=list)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    serde: AvroSerde = field(default_factory=lambda: AvroSerde(shipped_catalog()))
    restarts: dict[str, int] = field(default_factory=dict)
    supervise: bool = True
    crashes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.broker = KafkaBroker(port=self.broker_port)
        self.kafka = KafkaSettings(bootstrap_servers=self.broker.bootstrap)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """A fresh broker (its data wiped: the run reads its topics whole), cameras, then the services."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker.stop()
        shutil.rmtree(self.broker.home, ignore_errors=True)
        self.broker.start(timeout_s=180)
        create_topics(self.kafka, pipeline_topics())
        if self.rtsp:
            self.servers = [start_rtsp_server({f"cam{i}": SAMPLE}, port=0) for i in range(self.cameras)]
            urls = [server.urls[f"cam{i}"] for i, server in enumerate(self.servers)]
        else:
            urls = [f"file://{SAMPLE}"] * self.cameras
        publish(self.kafka, self.serde, camera_entries(self.cameras, urls, self.fps))
        for name in PIPELINE_SERVICES:
            self.services[name] = self._process(name).start()

    def _process(self, name: str) -> ServiceProcess:
        env = {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "CCTV_HTTP__PORT": "0",
            "CCTV_LOG__FORMAT": "text",
            "CCTV_GROUP_ID": f"chaos-{name}",
        }
        if name == "alert-router":
            env |= {
                "CCTV_DATA_DIR": str(self.workdir / "router-data"),
                "CCTV_INCIDENTS__END_GRACE_S": str(self.end_grace_s),
                "CCTV_EXPIRE_INTERVAL_S": "0.5",
            }
        return ServiceProcess(name, env | self.extra_env, self.workdir / f"{name}.log")

    def kill_and_restart(self, name: str) -> None:
        """kill -9 (no flush, no commit), then a new process with the same group and state directory."""
        self.services[name].kill()
        self.services[name] = self._process(name).start()
        self.restarts[name] = self.restarts.get(name, 0) + 1

    def restart_broker(self) -> None:
        self.broker.stop()
        self.broker.start(timeout_s=180)

    def drop_camera(self, index: int) -> str:
        """The camera's server goes away for good (a camera lost in the field)."""
        self.servers[index].stop()
        return f"chaos-{index}"

    def stop_sources(self) -> None:
        for server in self.servers:
            if server.running:
                server.stop()

    def assert_alive(self) -> None:
        """Services that exited by themselves are restarted, as `cctv up`'s supervisor or Kubernetes would,
        and recorded in `crashes` (with the last error lines of their log): a finding of the run, never
        hidden. Without `supervise`, such an exit ends the run."""
        for name, service in self.services.items():
            if service.alive:
                continue
            errors = [line for line in service.log_text().splitlines() if " ERROR " in line or "CRITICAL" in line]
            crash = {"service": name, "exit": service.exit_code(), "last_errors": errors[-3:]}
            if not self.supervise:
                raise ChaosError(f"{name} died (exit {service.exit_code()}):\n{service.log_text()[-3000:]}")
            self.crashes.append(crash)
            self.services[name] = self._process(name).start()

    def stop(self) -> dict[str, int | None]:
        """SIGTERM to every service that was started (also after a failed start), then the cameras."""
        codes = {name: service.stop(timeout_s=GRACEFUL_STOP_S) for name, service in self.services.items()}
        self.stop_sources()
        return codes

    def shutdown_broker(self) -> None:
        self.broker.stop()

    # ------------------------------------------------------------------ probes
    def _client(self, group: str) -> Consumer:
        return Consumer(
            self.kafka.client_config()
            | {"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        )

    def end_offsets(self, topic: str, timeout_s: float = 120.0) -> dict[int, int]:
        """Each partition's end offset; retried while the broker is coming back (leaders not elected yet)."""
        deadline = time.monotonic() + timeout_s
        while True:
            client = self._client("chaos-probe")
            try:
                partitions = client.list_topics(topic, timeout=10).topics[topic].partitions
                return {p: client.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)  # the broker is electing leaders: ask again shortly
            finally:
                client.close()

    def committed_past(self, name: str, ends: dict[int, int]) -> bool:
        """The service's group committed everything up to `ends` on its input topic (it processed it)."""
        client = self._client(f"chaos-{name}")
        try:
            wanted = [TopicPartition(INPUT_OF[name], p) for p, end in ends.items() if end > 0]
            committed = client.committed(wanted, timeout=10) if wanted else []
            return all(tp.offset >= ends[tp.partition] for tp in committed)
        except KafkaException:  # broker still coming back: not caught up yet
            return False
        finally:
            client.close()

    def records(self) -> int:
        return sum(self.end_offsets(DETECTIONS).values())

    def wait_flowing(self, timeout_s: float) -> None:
        """New Detections records appear: the whole chain camera → detector works."""
        before = self.records()
        wait_until(lambda: self.assert_alive() or self.records() > before, timeout_s, "detections to flow")

    def wait_drained(self, timeout_s: float) -> None:
        """Every stage processed everything its input holds (sources are stopped by then)."""
        deadline = time.monotonic() + timeout_s
        for name in ("frame-sampler", "detector", "alert-router"):
            ends = self.end_offsets(INPUT_OF[name])
            remaining = max(1.0, deadline - time.monotonic())
            wait_until(
                lambda n=name, e=ends: self.assert_alive() or self.committed_past(n, e),
                remaining,
                f"{name} to process its whole input",
            )

    def read_all(self, topic: str, schema: str) -> list[dict[str, Any]]:
        """Every record of `topic` from the beginning up to its current end, deserialized."""
        ends = self.end_offsets(topic)
        client = self._client(f"chaos-reader-{time.monotonic_ns()}")
        client.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        values: list[dict[str, Any]] = []
        position = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 120
        try:
            while any(position[p] < end for p, end in ends.items()) and time.monotonic() < deadline:
                for message in client.consume(500, 1.0):
                    if message.error() is None:
                        position[message.partition()] = message.offset() + 1
                        values.append(self.serde.deserialize(topic, schema, message.value()))
        finally:
            client.close()
        if any(position[p] < end for p, end in ends.items()):
            raise ChaosError(f"could not read {topic} to its end within 120 s")
        return values

    def topics_read(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        return self.read_all(FRAMES, "Frame"), self.read_all(DETECTIONS, "Detections"), self.read_all(ALERTS, "Alert")
