"""Start and stop the dev RTSP camera server (cctv/devstack/rtsp_server.py) from the project venv.

The server itself needs Debian's GStreamer bindings, so it runs under the system interpreter
(/usr/bin/python3), not the venv. Typical use in a test or the dev stack:

    handle = start_rtsp_server({"cam1": Path("samples/vtest-h264.mp4")}, port=0)
    try:
        url = handle.urls["cam1"]      # rtsp://127.0.0.1:PORT/cam1
    finally:
        handle.stop()
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self
from urllib.parse import quote

SYSTEM_PYTHON = Path("/usr/bin/python3")
SERVER_SCRIPT = Path(__file__).resolve().with_name("rtsp_server.py")
READY_PREFIX = "READY "
GSTREAMER_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "missing = [n for n in ('qtdemux', 'appsrc', 'appsink', 'h264parse', 'rtph264pay') "
    "if Gst.ElementFactory.find(n) is None]; raise SystemExit(1 if missing else 0)"
)


class RtspServerError(RuntimeError):
    """The RTSP server could not be started; the message carries its stderr."""


@dataclass
class RtspServerHandle:
    """A running rtsp_server.py process."""

    process: subprocess.Popen[str]
    stderr_log: IO[str]
    port: int
    address: str
    urls: dict[str, str]
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def url(self, mount: str, with_credentials: bool = True) -> str:
        """The RTSP URL for a mount, with user:password@ embedded when auth is on and requested."""
        plain = self.urls[mount]
        if not with_credentials or self.user is None or self.password is None:
            return plain
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
        return plain.replace("rtsp://", f"rtsp://{credentials}", 1)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM the server and wait; SIGKILL only if it ignores that. Returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr_log.close()
        return self.process.returncode

    def stderr_text(self) -> str:
        """What the server wrote to stderr so far (errors about mounts, GStreamer warnings)."""
        self.stderr_log.flush()
        self.stderr_log.seek(0)
        return self.stderr_log.read()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


def gstreamer_available() -> bool:
    """True when /usr/bin/python3 can import GstRtspServer and the needed GStreamer elements exist."""
    if not SYSTEM_PYTHON.exists():
        return False
    try:
        completed = subprocess.run(
            [str(SYSTEM_PYTHON), "-c", GSTREAMER_PROBE], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0


def start_rtsp_server(
    mounts: dict[str, Path],
    port: int = 0,
    *,
    address: str = "127.0.0.1",
    user: str | None = None,
    password: str | None = None,
    tls_pem: Path | None = None,
    ready_timeout_s: float = 30.0,
    python: Path = SYSTEM_PYTHON,
) -> RtspServerHandle:
    """Spawn rtsp_server.py serving each file looped at rtsp://address:port/NAME; wait for its READY line.

    port=0 picks a free port; tls_pem (certificate + private key) serves rtsps:// instead. Raises
    RtspServerError (with the server's stderr) if it exits or does not report READY within ready_timeout_s.
    """
    if not mounts:
        raise ValueError("start_rtsp_server needs at least one mount, e.g. {'cam1': Path('samples/vtest-h264.mp4')}")
    if not python.exists():
        raise RtspServerError(f"{python} not found; the RTSP server needs Debian's python3 with python3-gi")
    command = [str(python), str(SERVER_SCRIPT), "--address", address, "--port", str(port)]
    for name, path in mounts.items():
        command += ["--mount", f"{name}={Path(path).resolve()}"]
    if user is not None or password is not None:
        if user is None or password is None:
            raise ValueError("give both user and password, or neither")
        command += ["--user", user, "--password", password]
    if tls_pem is not None:
        command += ["--tls-pem", str(Path(tls_pem).resolve())]
    # A clean environment for Debian's python: the venv's variables must not leak into it.
    environment = {
        key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    # stderr goes to a temporary file, not a pipe, so a chatty server can never block on a full pipe.
    stderr_log = tempfile.TemporaryFile(mode="w+", prefix="rtsp-server-", suffix=".log")  # noqa: SIM115 - lives as long as the server; closed by stop()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=stderr_log, text=True, env=environment, bufsize=1
    )
    assert process.stdout is not None

    def stderr_so_far() -> str:
        stderr_log.seek(0)
        return stderr_log.read().strip()

    deadline = time.monotonic() + ready_timeout_s
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.kill()
                process.wait()
                raise RtspServerError(
                    f"RTSP server gave no READY line within {ready_timeout_s:.0f} s: {stderr_so_far()}"
                )
            if not selector.select(timeout=remaining):
                continue
            line = process.stdout.readline()
            if not line:  # stdout closed: the server exited
                process.wait()
                raise RtspServerError(f"RTSP server exited with code {process.returncode}: {stderr_so_far()}")
            if line.startswith(READY_PREFIX):
                ready = json.loads(line[len(READY_PREFIX) :])
                return RtspServerHandle(
                    process=process,
                    stderr_log=stderr_log,
                    port=int(ready["port"]),
                    address=ready["address"],
                    urls=dict(ready["urls"]),
                    user=user,
                    password=password,
                )
    finally:
        selector.close()
