"""Background processes of the local dev stack (broker, registry): start detached, track by PID file, stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class DevStackError(Exception):
    """A local dev-stack component could not be fetched, started or reached; the message says what to do."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Project cache (jars, broker data); CCTV_CACHE_DIR overrides."""
    configured = os.environ.get("CCTV_CACHE_DIR")
    return Path(configured) if configured else repo_root() / ".cache"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn(command: list[str], log_file: Path, pid_file: Path, env: dict[str, str] | None = None) -> int:
    """Start a detached process (own session, so Ctrl-C in the caller's terminal does not hit it)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    pid_file.write_text(str(process.pid))
    return process.pid


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def stop_pid(pid_file: Path, timeout_s: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after the timeout. Returns True if a process was stopped."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not pid_alive(pid), timeout_s):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_until(lambda: not pid_alive(pid), 10)
    try:  # reap if it was our child
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    pid_file.unlink(missing_ok=True)
    return True


def port_open(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class LocalServer:
    """A dev-stack server on 127.0.0.1: idempotent start, status and stop by PID file.

    Subclasses say where it lives (`home`), how to tell it is ready, and how to launch it."""

    name = "server"
    host = "127.0.0.1"
    port: int

    @property
    def home(self) -> Path:
        raise NotImplementedError

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    def ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> list[str]:
        """Fetch and configure whatever is needed; return the command line that runs the server."""
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """Environment for the server process (None: inherit ours)."""
        return None

    def status(self) -> str:
        pid = read_pid(self.pid_file)
        if pid is None:
            return "running (not started by us)" if port_open(self.host, self.port) and self.ready() else "stopped"
        return f"running (pid {pid})" if self.ready() else f"starting (pid {pid})"

    def start(self, timeout_s: float = 120.0) -> str:
        """Start unless already running; returns 'started' or 'already running'."""
        if read_pid(self.pid_file) is not None or port_open(self.host, self.port):
            if not wait_until(self.ready, timeout_s):
                raise DevStackError(f"port {self.port} is taken by something that is not a ready {self.name}")
            return "already running"
        if shutil.which("java") is None:
            raise DevStackError("Java 17+ is not installed: run `sudo apt-get install openjdk-17-jre-headless`")
        self.home.mkdir(parents=True, exist_ok=True)
        spawn(self.prepare(), self.log_file, self.pid_file, env=self.environment())
        if not wait_until(self.ready, timeout_s, interval_s=0.5):
            tail = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
            self.stop()
            raise DevStackError(f"{self.name} not ready within {timeout_s:.0f} s; log tail:\n{tail}")
        return "started"

    def stop(self) -> bool:
        return stop_pid(self.pid_file, timeout_s=30)
