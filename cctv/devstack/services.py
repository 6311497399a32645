"""The services `cctv up` runs, declared once, and one service process (also used by end-to-end tests).

Adding a service to the dev stack is one more `ServiceSpec` in `DEV_STACK_SERVICES`: its module, its
HTTP (metrics/health) port, extra environment, and an optional line to show once it started (a URL
and where its login is).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class StackContext:
    """What a service of the dev stack may need to know about the stack it runs in."""

    bootstrap: str
    registry_url: str | None
    state_dir: Path  # run/: logs, credentials written for the developer, lock files
    # S3 endpoint, credentials and signing key for the clip-writer (empty: no local object store).
    object_store_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the dev stack, declaratively."""

    name: str
    module: str  # run as `python -m <module>`
    http_port: int  # its /metrics and /health port (0 = any free port)
    extra_env: Callable[[StackContext], Mapping[str, str]] = lambda _ctx: {}
    # Called once before the first start (e.g. create dev users); returns lines to print (never secrets
    # that are not meant for the developer at the terminal).
    prepare: Callable[[StackContext], list[str]] = lambda _ctx: []

    def environment(self, context: StackContext) -> dict[str, str]:
        env = {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": context.bootstrap,
            "CCTV_HTTP__PORT": str(self.http_port),
            "CCTV_INSTANCE_ID": f"{self.name}-local",
        }
        if context.registry_url:
            env["CCTV_REGISTRY__URL"] = context.registry_url
        return env | dict(self.extra_env(context))


def camera_credentials_dir(context: StackContext) -> Path:
    return context.state_dir / "camera-credentials"


def _prepare_credentials(context: StackContext) -> list[str]:
    directory = camera_credentials_dir(context)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    line = (
        f"camera credentials: one file per credentials_ref in {directory}/ (content user:password), "
        "read when it changes; no restart needed"
    )
    return [line]


def _prepare_console(context: StackContext) -> list[str]:
    """Dev logins for the console, created once with random passwords; printed only when new."""
    from services.console.users import CREDENTIALS_FILE, ensure_dev_users

    _prepare_share_key(context)  # the console signs share links even when run without the gateway

    created = ensure_dev_users(context.state_dir)
    lines = [f"console login created: {name} / {password}" for name, password in created.items()]
    return lines + [f"console: http://127.0.0.1:{CONSOLE_PORT} (logins in {context.state_dir / CREDENTIALS_FILE})"]


CONSOLE_PORT = 8080
SHARE_EDGE_PORT = 8090  # share links (the public video edge); its probes and metrics are on 9107
SHARE_KEY_FILE = "share-key"


def share_key_file(context: StackContext) -> Path:
    return context.state_dir / SHARE_KEY_FILE


def _prepare_share_key(context: StackContext) -> list[str]:
    """The key that signs share links, shared by the console and the gateway: created once, 0600."""
    import secrets

    path = share_key_file(context)
    if not path.exists():
        context.state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return [
        f"share links: http://127.0.0.1:{SHARE_EDGE_PORT}/s/<token>/ (created in the console, Share on an incident)"
    ]


def _console_env(context: StackContext) -> dict[str, str]:
    return {
        "CCTV_DEV_USERS_DIR": str(context.state_dir),
        "CCTV_SHARES__KEY_FILE": str(share_key_file(context)),
        "CCTV_SHARES__GATEWAY_URL": f"http://127.0.0.1:{SHARE_EDGE_PORT}",
    } | {  # the S3 part of the object store's settings: the incident clip player reads the clips
        k: v for k, v in context.object_store_env.items() if k.startswith("CCTV_S3__")
    }


DEV_STACK_SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "ingest",
        "services.ingest.main",
        9101,
        extra_env=lambda ctx: {"CCTV_CREDENTIALS_DIR": str(camera_credentials_dir(ctx))},
        prepare=_prepare_credentials,
    ),
    ServiceSpec("frame-sampler", "services.frame_sampler.main", 9102),
    ServiceSpec("detector", "services.detector.main", 9103),
    ServiceSpec("alert-router", "services.alert_router.main", 9104),
    # Runs only when the local S3 store runs (SeaweedFS built by `make s3`); see cctv/devstack/s3.py.
    ServiceSpec("clip-writer", "services.clip_writer.main", 9105, extra_env=lambda ctx: ctx.object_store_env),
    # Idles unless the routing file (CCTV_ROUTES_FILE) gives destinations webhook endpoints.
    ServiceSpec("dispatcher", "services.dispatcher.main", 9106),
    # Plays live-video shares to agencies (HLS) on its own public port; idles until a share is made.
    ServiceSpec(
        "share-gateway",
        "services.share_gateway.main",
        9107,
        extra_env=lambda ctx: {
            "CCTV_SHARE_KEY_FILE": str(share_key_file(ctx)),
            "CCTV_EDGE__HOST": "127.0.0.1",
            "CCTV_EDGE__PORT": str(SHARE_EDGE_PORT),
        },
        prepare=_prepare_share_key,
    ),
    # Its HTTP port is the web page operators open.
    ServiceSpec("console", "services.console.main", CONSOLE_PORT, extra_env=_console_env, prepare=_prepare_console),
)

# name → module, for tests and benchmarks that start single services.
SERVICE_MODULES = {spec.name: spec.module for spec in DEV_STACK_SERVICES}
# Camera → alert: the services a frame passes through (end-to-end tests start exactly these).
PIPELINE_SERVICES = ("ingest", "frame-sampler", "detector", "alert-router")


@dataclass
class ServiceProcess:
    """One service replica: `python -m services.<name>.main` with its own environment and log file."""

    name: str
    env: dict[str, str]
    log_file: Path
    module: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> ServiceProcess:
        module = self.module or SERVICE_MODULES[self.name.split("#")[0]]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module],
                env=os.environ | self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def exit_code(self) -> int | None:
        """None while it runs (or was never started); negative = killed by that signal."""
        return self.process.poll() if self.process is not None else None

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


def describe_exit(code: int | None) -> str:
    """'stopped' for a graceful SIGTERM exit, 'exit code N' or 'killed by SIGKILL' otherwise."""
    if code is None:
        return "still running"
    if code in (0, -signal.SIGTERM):
        return "stopped"
    if code in (-signal.SIGINT, 128 + signal.SIGINT):
        return "stopped (Ctrl-C)"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
