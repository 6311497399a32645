"""`cctv up` / `make run`: the whole pipeline on this machine, on real footage, with a live alert table."""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from cctv.console import alert_table, follow_alerts
from cctv.devstack.kafka import KafkaBroker
from cctv.devstack.process import DevStackError, repo_root
from cctv.devstack.registry import SchemaRegistry
from cctv.devstack.rtsp import RtspServerError, gstreamer_available, start_rtsp_server
from cctv.devstack.s3 import ObjectStore, start_local_clip_writer
from cctv.devstack.services import SERVICE_MODULES, ServiceProcess
from cctv.inventory import InventoryError, parse_yaml, publish
from libs.kafka import create_topics
from libs.serde import make_serde
from libs.settings import KafkaSettings, RegistrySettings
from libs.topics import pipeline_topics

SAMPLE = "samples/vtest-h264.mp4"
HTTP_PORTS = {"ingest": 9101, "frame-sampler": 9102, "detector": 9103, "alert-router": 9104}


def _inventory(cameras_file: Path, rtsp_url: str | None, console: Console):
    """The inventory file with {repo} and {rtsp} filled in; RTSP cameras are left out without GStreamer."""
    text = cameras_file.read_text().replace("{repo}", str(repo_root()))
    entries = parse_yaml(text.replace("{rtsp}", rtsp_url or "rtsp://unavailable"))
    if rtsp_url is None:
        skipped = [e.camera_id for e in entries if e.stream_url.startswith("rtsp://unavailable")]
        if skipped:
            console.print(f"[yellow]GStreamer RTSP server not available: skipping {', '.join(skipped)}[/]")
        entries = [e for e in entries if not e.stream_url.startswith("rtsp://unavailable")]
    return entries


def run_stack(cameras_file: Path, logs: Path, keep_kafka: bool, duration_s: float, console: Console) -> int:
    broker, registry = KafkaBroker(port=9092), SchemaRegistry(port=8081)
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
    registry_settings = RegistrySettings(url=registry.url)
    services: list[ServiceProcess] = []
    rtsp = None
    stop = threading.Event()
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with console.status("starting Kafka (KRaft) and the schema registry..."):
            console.print(f"Kafka {broker.start()} at {broker.bootstrap}")
            console.print(f"Schema registry {registry.start()} at {registry.url}")
            create_topics(kafka, pipeline_topics())
        console.print("topics ready (cctv topics check to verify)")

        rtsp_url = None
        if gstreamer_available():
            try:
                rtsp = start_rtsp_server({"sample": repo_root() / SAMPLE}, port=8554)
                rtsp_url = rtsp.urls["sample"]
                console.print(f"sample RTSP camera at {rtsp_url}")
            except RtspServerError as error:
                console.print(f"[yellow]sample RTSP camera not started: {error}[/]")
        try:
            entries = _inventory(cameras_file, rtsp_url, console)
        except InventoryError as error:
            console.print(f"[red]{cameras_file}:[/]\n{error}")
            return 1
        serde = make_serde(registry_settings)
        publish(kafka, serde, entries)
        console.print(f"published {len(entries)} cameras from {cameras_file}: {', '.join(e.camera_id for e in entries)}")

        logs.mkdir(parents=True, exist_ok=True)
        for name in SERVICE_MODULES:
            env = {
                "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "CCTV_REGISTRY__URL": registry.url,
                "CCTV_HTTP__PORT": str(HTTP_PORTS[name]), "CCTV_INSTANCE_ID": f"{name}-local",
            }
            services.append(ServiceProcess(name, env, logs / f"{name}.log").start())
        console.print(f"services started: {', '.join(s.name for s in services)} (logs in {logs}/, metrics on ports "
                      f"{', '.join(str(p) for p in HTTP_PORTS.values())})")
        evidence = start_local_clip_writer(kafka.bootstrap_servers, registry.url, logs / "clip-writer.log", 9105, console.print)
        services += [evidence[1]] if evidence else []
        console.print("[bold]Waiting for alerts; Ctrl-C stops everything.[/]")

        alerts: deque[dict] = deque(maxlen=20)
        started = time.monotonic()
        first_alert_after: float | None = None

        def header() -> Text:
            state = "  ".join(f"{s.name}: {'up' if s.alive else 'DOWN'}" for s in services)
            elapsed = time.monotonic() - started
            first = f"first alert after {first_alert_after:.0f} s" if first_alert_after else "no alert yet"
            return Text(f"{elapsed:5.0f} s  |  {state}  |  {first}")

        with Live(Group(header(), alert_table(alerts)), console=console, refresh_per_second=2) as live:
            for alert in follow_alerts(kafka, serde, stop=stop.is_set):
                if alert is not None:
                    alerts.append(alert)
                    first_alert_after = first_alert_after or time.monotonic() - started
                live.update(Group(header(), alert_table(alerts)))
                if duration_s and time.monotonic() - started > duration_s:
                    break
        return 0
    except KeyboardInterrupt:
        return 0
    except DevStackError as error:
        console.print(f"[red]{error}[/]")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        console.print("stopping services...")
        for service in services:
            code = service.stop()
            console.print(f"  {service.name} exited with {code}")
        if rtsp is not None:
            rtsp.stop()
        if not keep_kafka:
            ObjectStore().stop()
            registry.stop()
            broker.stop()
            console.print("Kafka and the schema registry stopped")
