"""`cctv down`: stop exactly the local stack on the given ports and say what was stopped; `--purge`
also deletes its state."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from cctv.devstack.kafka import KafkaBroker
from cctv.devstack.lock import holder
from cctv.devstack.process import pid_alive, repo_root, wait_until
from cctv.devstack.registry import SchemaRegistry
from cctv.devstack.state import purge_paths, remove

UP_STOP_TIMEOUT_S = 90.0  # services flush and commit, then the broker and registry stop


def stop_stack(kafka_port: int, registry_port: int, purge: bool, state_dir: Path | None) -> tuple[list[str], int]:
    """Returns the lines to print and the exit code."""
    lines: list[str] = []
    running = holder(kafka_port)
    if running is not None:
        pid = int(running.get("pid", 0))
        services = ", ".join(running.get("services", []))
        os.kill(pid, signal.SIGTERM)  # `cctv up` stops its services and what it started, as on Ctrl-C
        if not wait_until(lambda: holder(kafka_port) is None, UP_STOP_TIMEOUT_S, 0.5):
            return lines + [f"`cctv up` (pid {pid}) did not stop within {UP_STOP_TIMEOUT_S:.0f} s"], 1
        lines.append(f"stopped `cctv up` (pid {pid}) and its services: {services}")
        state_dir = state_dir or Path(running.get("state_dir") or repo_root() / "run")
    broker, registry = KafkaBroker(port=kafka_port), SchemaRegistry(port=registry_port)
    for title, server in (("schema registry", registry), ("Kafka", broker)):
        server_pid = _pid(server.pid_file)
        if server.stop():
            lines.append(f"stopped {title} (pid {server_pid}) on 127.0.0.1:{server.port}")
    if not lines:
        lines.append(f"nothing to stop: no `cctv up`, Kafka or registry of ours on ports {kafka_port}/{registry_port}")
    if purge:
        if broker.status() != "stopped" or registry.status() != "stopped":
            refusal = (
                f"not purging: something still answers on port {kafka_port} or {registry_port} "
                "(not started by cctv; stop it first)"
            )
            return [*lines, refusal], 1
        removed = remove(purge_paths(kafka_port, registry_port, state_dir or repo_root() / "run"))
        lines += removed or ["nothing to purge: no broker data, registry database or run state"]
    return lines, 0


def _pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None
