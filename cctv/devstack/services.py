"""Run the pipeline's services as separate processes (for `cctv up` and end-to-end tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_MODULES = {
    "ingest": "services.ingest.main",
    "frame-sampler": "services.frame_sampler.main",
    "detector": "services.detector.main",
    "alert-router": "services.alert_router.main",
}


@dataclass
class ServiceProcess:
    """One service replica: `python -m services.<name>.main` with its own environment and log file."""

    name: str
    env: dict[str, str]
    log_file: Path
    module: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> "ServiceProcess":
        module = self.module or SERVICE_MODULES[self.name.split("#")[0]]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module], env=os.environ | self.env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (graceful: flush, commit, close), SIGKILL if it does not exit in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def kill(self) -> None:
        """Abrupt death, as when a node disappears."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
