"""`cctv up` / `make run`: the whole pipeline on this machine, on real footage, with a live alert table
(or plain lines when stdout is not a terminal). Services are supervised: restarted when they exit."""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from cctv.console import alert_line, alert_table, follow_alerts
from cctv.devstack.events import PlatformEventPublisher, event_line
from cctv.devstack.kafka import KafkaBroker
from cctv.devstack.lock import StackRunning, acquire
from cctv.devstack.process import DevStackError, repo_root
from cctv.devstack.registry import SchemaRegistry
from cctv.devstack.rtsp import RtspServerError, gstreamer_available, start_rtsp_server
from cctv.devstack.s3 import ObjectStore, start_local_object_store
from cctv.devstack.services import DEV_STACK_SERVICES, ServiceSpec, StackContext
from cctv.devstack.state import describe_state
from cctv.devstack.supervisor import PlatformEvent, RestartPolicy, Supervisor
from cctv.inventory import InventoryError, parse_yaml, publish
from libs.kafka import create_topics
from libs.serde import AvroSerde, make_serde, shipped_catalog
from libs.settings import KafkaSettings, RegistrySettings
from libs.topics import pipeline_topics

SAMPLE = "samples/vtest-h264.mp4"


class StackOptions(BaseModel):
    """What `cctv up` runs; every path is absolute once validated, so any working directory works."""

    cameras: Path = Field(default_factory=lambda: repo_root() / "samples" / "cameras.yaml")
    state_dir: Path = Field(default_factory=lambda: repo_root() / "run")
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    registry_port: int = Field(default=8081, ge=0, le=65535)  # 0: no registry (records carry their schema)
    rtsp_port: int = Field(default=8554, ge=0, le=65535)
    http_port_offset: int = Field(default=0, ge=0, le=50000)  # added to each service's metrics port
    services: list[str] = Field(default_factory=lambda: [s.name for s in DEV_STACK_SERVICES])
    keep_kafka: bool = False
    duration_s: float = Field(default=0, ge=0)
    restart: RestartPolicy = Field(default_factory=RestartPolicy)

    @field_validator("services")
    @classmethod
    def _known_services(cls, value: list[str]) -> list[str]:
        known = [s.name for s in DEV_STACK_SERVICES]
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return list(dict.fromkeys(value))

    def specs(self) -> list[ServiceSpec]:
        known = {s.name: s for s in DEV_STACK_SERVICES}
        return [replace(known[name], http_port=known[name].http_port + self.http_port_offset) for name in self.services]


def _inventory(cameras_file: Path, rtsp_url: str | None, console: Console) -> list[Any]:
    """The inventory file with {repo} and {rtsp} filled in; RTSP cameras are left out without GStreamer."""
    text = cameras_file.read_text().replace("{repo}", str(repo_root()))
    entries = parse_yaml(text.replace("{rtsp}", rtsp_url or "rtsp://unavailable"))
    if rtsp_url is None:
        skipped = [e.camera_id for e in entries if e.stream_url.startswith("rtsp://unavailable")]
        if skipped:
            console.print(f"[yellow]sample RTSP camera not available: skipping {', '.join(skipped)}[/]")
        entries = [e for e in entries if not e.stream_url.startswith("rtsp://unavailable")]
    return entries


class _Stack:
    """What one `cctv up` started, so that exactly that is stopped again."""

    def __init__(self, options: StackOptions, console: Console) -> None:
        self.options, self.console = options, console
        self.broker = KafkaBroker(port=options.kafka_port)
        self.registry = SchemaRegistry(port=options.registry_port) if options.registry_port else None
        self.started_broker = self.started_registry = False
        self.rtsp: Any = None
        self.object_store: ObjectStore | None = None
        self.supervisor: Supervisor | None = None
        self.publisher: PlatformEventPublisher | None = None

    def start_servers(self) -> tuple[KafkaSettings, AvroSerde, str | None]:
        with self.console.status("starting Kafka (KRaft) and the schema registry..."):
            outcome = self.broker.start()
            self.started_broker = outcome == "started"
            self.console.print(f"Kafka {outcome} at {self.broker.bootstrap}")
            registry_url = None
            if self.registry is not None:
                outcome = self.registry.start(timeout_s=240)
                self.started_registry = outcome == "started"
                registry_url = self.registry.url
                self.console.print(f"Schema registry {outcome} at {registry_url}")
            kafka = KafkaSettings(bootstrap_servers=self.broker.bootstrap)
            create_topics(kafka, pipeline_topics())
        serde = make_serde(RegistrySettings(url=registry_url)) if registry_url else AvroSerde(shipped_catalog())
        return kafka, serde, registry_url

    def start_rtsp(self) -> str | None:
        if not self.options.rtsp_port or not gstreamer_available():
            return None
        try:
            self.rtsp = start_rtsp_server({"sample": repo_root() / SAMPLE}, port=self.options.rtsp_port)
        except RtspServerError as error:
            self.console.print(f"[yellow]sample RTSP camera not started: {str(error).splitlines()[0]}[/]")
            return None
        url: str = self.rtsp.urls["sample"]
        self.console.print(f"sample RTSP camera at {url}")
        return url

    def start_object_store(self) -> dict[str, str]:
        """The clip-writer's S3 environment, or {} when no local store can run (SeaweedFS not built)."""
        started = start_local_object_store(self.console.print)
        if started is None:
            return {}
        self.object_store, env = started
        return env

    def stop(self) -> None:
        if self.supervisor is not None:
            self.console.print("stopping services...")
            codes = self.supervisor.stop()
            self.console.print("  " + ", ".join(f"{name}: {_exit_word(code)}" for name, code in codes.items()))
        if self.publisher is not None:
            self.publisher.close()
        if self.rtsp is not None:
            self.rtsp.stop()
        if self.options.keep_kafka:
            return
        stopped = []
        if self.object_store is not None and self.object_store.stop():
            stopped.append(f"S3 object store on port {self.object_store.port}")
        if self.started_registry and self.registry is not None and self.registry.stop():
            stopped.append(f"schema registry on port {self.registry.port}")
        if self.started_broker and self.broker.stop():
            stopped.append(f"Kafka on port {self.broker.port}")
        if stopped:
            self.console.print(f"stopped {', '.join(stopped)} (data kept; `cctv down --purge` resets)")
        elif not self.started_broker and self.broker.status() != "stopped":
            self.console.print(f"left Kafka on port {self.broker.port} running: this run did not start it")


def _exit_word(code: int | None) -> str:
    from cctv.devstack.services import describe_exit

    return "not started" if code is None else describe_exit(code)


def run_stack(options: StackOptions, console: Console) -> int:
    cameras_file = options.cameras
    if not cameras_file.is_file():
        console.print(f"[red]error:[/] camera inventory {cameras_file} not found (give --cameras FILE)")
        return 2
    specs = options.specs()
    try:
        registry_url = SchemaRegistry(port=options.registry_port).url if options.registry_port else None
        lock = acquire(
            options.kafka_port,
            {"state_dir": str(options.state_dir), "services": options.services, "registry_url": registry_url},
        )
    except (StackRunning, DevStackError) as error:
        console.print(f"[red]error:[/] {error}")
        return 3
    stack = _Stack(options, console)
    stop = threading.Event()
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    previous_interrupt = signal.getsignal(signal.SIGINT)
    try:
        kafka, serde, registry_url = stack.start_servers()
        console.print("topics ready (cctv topics check to verify)")
        try:
            entries = _inventory(cameras_file, stack.start_rtsp(), console)
        except InventoryError as error:
            console.print(f"[red]{cameras_file}:[/]\n{error}")
            return 1
        for line in describe_state(kafka, serde, {e.camera_id for e in entries}):
            console.print(line)
        publish(kafka, serde, entries)
        console.print(
            f"published {len(entries)} cameras from {cameras_file}: {', '.join(e.camera_id for e in entries)}"
        )

        logs = options.state_dir / "logs"
        object_store_env = stack.start_object_store() if any(s.name == "clip-writer" for s in specs) else {}
        if not object_store_env:
            specs = [spec for spec in specs if spec.name != "clip-writer"]
        context = StackContext(kafka.bootstrap_servers, registry_url, options.state_dir, object_store_env)
        for spec in specs:
            for line in spec.prepare(context):
                console.print(line)
        stack.publisher = PlatformEventPublisher(kafka, serde)
        started = time.monotonic()
        started_us = int(time.time() * 1_000_000)
        events: deque[PlatformEvent] = deque(maxlen=4)
        live_view = console.is_terminal

        def report(event: PlatformEvent) -> None:
            assert stack.publisher is not None
            stack.publisher.publish(event)
            events.append(event)
            if not live_view or event.event != "STARTED" or event.restarts:
                console.print(event_line(event))  # above the live table when there is one

        stack.supervisor = Supervisor(specs, context, logs, report, options.restart).start()
        supervisor = stack.supervisor

        def shutting_down(*_: object) -> None:
            # Ctrl-C reaches the services too (same process group) and they exit on it: that is the
            # shutdown, not something to restart.
            supervisor.halt()
            stop.set()

        signal.signal(signal.SIGTERM, shutting_down)
        signal.signal(signal.SIGINT, shutting_down)
        console.print(
            f"services started: {', '.join(s.name for s in specs)} (logs in {logs}/, metrics on ports "
            f"{', '.join(str(s.http_port) for s in specs)})"
        )
        console.print("[bold]Waiting for alerts; Ctrl-C stops everything.[/]")
        return _show_alerts(stack.supervisor, kafka, serde, stop, started, started_us, options.duration_s, console)
    except KeyboardInterrupt:
        return 0
    except DevStackError as error:
        console.print(f"[red]{error}[/]")
        return 1
    except Exception as error:  # noqa: BLE001 — one clear line instead of a traceback; everything is stopped
        console.print(f"[red]error:[/] {type(error).__name__}: {error} (service logs in {options.state_dir / 'logs'})")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        signal.signal(signal.SIGINT, previous_interrupt)
        stack.stop()
        lock.release()


def _show_alerts(
    supervisor: Supervisor,
    kafka: KafkaSettings,
    serde: AvroSerde,
    stop: threading.Event,
    started: float,
    started_us: int,
    duration_s: float,
    console: Console,
) -> int:
    """Alerts detected after this run started (older ones replayed from a backlog are not counted)."""
    alerts: deque[dict[str, Any]] = deque(maxlen=20)
    first_alert_after: float | None = None

    def header() -> Text:
        state = "  ".join(f"{name}: {supervisor.state(name)}" for name in supervisor.names)
        first = f"first alert after {first_alert_after:.0f} s" if first_alert_after else "no alert yet"
        return Text(f"{time.monotonic() - started:5.0f} s  |  {state}  |  {first}")

    def finished() -> bool:
        return stop.is_set() or bool(duration_s and time.monotonic() - started > duration_s)

    if not console.is_terminal:
        for alert in follow_alerts(kafka, serde, stop=finished):
            if alert is not None and alert["detected_at"] >= started_us:
                if first_alert_after is None:
                    first_alert_after = time.monotonic() - started
                    console.print(f"first alert after {first_alert_after:.0f} s")
                console.print(alert_line(alert), markup=False, highlight=False, soft_wrap=True)
        return 0
    with Live(Group(header(), alert_table(alerts)), console=console, refresh_per_second=2) as live:
        for alert in follow_alerts(kafka, serde, stop=finished):
            if alert is not None and alert["detected_at"] >= started_us:
                alerts.append(alert)
                first_alert_after = first_alert_after or time.monotonic() - started
            live.update(Group(header(), alert_table(alerts)))
    return 0
