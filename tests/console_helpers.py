"""Running a real console process for tests: users file, environment, readiness, HTTP client."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from services.console.users import hash_password
from tests.kafka_helpers import free_port, wait_for

PASSWORDS = {
    "admin": "admin-pass-0001",
    "operator": "operator-pass-02",
    "operator2": "operator-pass-03",
    "viewer": "viewer-pass-0004",
    "partner": "partner-pass-005",
}


def write_users(path: Path, partner_cameras: list[str], operator_cameras: list[str] | None = None) -> Path:
    """admin, operator, operator2, viewer, partner (operator restricted to `partner_cameras`); the two
    operators optionally restricted too (a clean wall for screenshots on a broker other tests share)."""
    roles = {
        "admin": "admin",
        "operator": "operator",
        "operator2": "operator",
        "viewer": "viewer",
        "partner": "operator",
    }
    users: dict[str, Any] = {
        name: {"password_hash": hash_password(PASSWORDS[name]), "role": role} for name, role in roles.items()
    }
    users["partner"]["cameras"] = partner_cameras
    if operator_cameras is not None:
        users["operator"]["cameras"] = users["operator2"]["cameras"] = operator_cameras
    path.write_text(yaml.safe_dump({"users": users}))
    return path


@dataclass
class ConsoleProcess:
    env: dict[str, str]
    log_file: Path
    port: int = field(default_factory=free_port)
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90) -> ConsoleProcess:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.console.main", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | self.env | {"CCTV_HTTP__PORT": str(self.port)},
            )

        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log_file.read_text()[-3000:]
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout_s, "the console to be ready", interval_s=0.3)
        return self

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def client(self, user: str | None = None) -> httpx.Client:
        """An HTTP client logged in as `user` with a bearer token (None: anonymous)."""
        headers = {}
        if user is not None:
            response = httpx.post(
                f"{self.url}/api/v1/login", json={"username": user, "password": PASSWORDS[user]}, timeout=30
            )
            response.raise_for_status()
            headers["Authorization"] = f"Bearer {response.json()['token']}"
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)


def wait_json(client: httpx.Client, path: str, condition: Any, timeout_s: float = 60, what: str = "") -> Any:
    def check() -> Any:
        response = client.get(path)
        return response.json() if response.status_code == 200 and condition(response.json()) else None

    return wait_for(check, timeout_s, what or f"{path} to satisfy the condition", interval_s=0.25)
