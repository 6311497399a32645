"""The console's settings (environment CCTV_..., or the YAML named by CCTV_CONFIG_FILE)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from libs.evidence_store import S3Settings
from libs.settings import CommonSettings, HttpSettings
from libs.topics import DETECTIONS, FRAMES, VIDEO_PACKETS
from services.console.shares import ConsoleShareSettings


class ConsoleHttpSettings(HttpSettings):
    """The web app itself, which also serves /healthz, /readyz and /metrics: local-only unless told."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class ConsoleSettings(CommonSettings):
    http: ConsoleHttpSettings = Field(default_factory=ConsoleHttpSettings)
    users_file: Path | None = Field(default=None, description="YAML of users: argon2 hashes, roles, cameras")
    session_key: SecretStr | None = Field(default=None, description="signs sessions and tokens; same on every replica")
    session_key_file: Path | None = None
    dev_users_dir: Path | None = Field(default=None, description="create dev admin/operator logins here (cctv up)")
    secure_cookies: bool = False  # set true behind HTTPS (the Ingress)
    # Proxies whose X-Forwarded-For is believed (the audit's client address); the Ingress controller's.
    forwarded_allow_ips: str = "127.0.0.1"
    session_max_age_s: int = Field(default=12 * 3600, gt=60)
    token_max_age_s: int = Field(default=12 * 3600, gt=60)
    login_max_failures: int = Field(default=5, ge=1, description="failed logins (per name or address) before a lockout")
    login_lockout_s: float = Field(default=300.0, gt=0)
    incident_window_h: float = Field(default=72.0, gt=0, description="alerts/actions read back at start")
    max_incidents: int = Field(default=2000, ge=10)
    audit_keep: int = Field(default=2000, ge=10, description="recent audit records held for GET /api/v1/audit")
    shares: ConsoleShareSettings = Field(default_factory=ConsoleShareSettings)
    s3: S3Settings | None = Field(default=None, description="the evidence store, for the incident clip player")
    wall_max_tiles: int = Field(default=64, ge=1, le=400)
    silent_after_s: float = Field(default=120.0, gt=0, description="no frame this long: maintenance alert")
    lag_interval_s: float = Field(default=10.0, gt=0)
    # Consumer group -> input topic, for the pipeline lag panel (the groups `cctv up` and the chart use).
    lag_groups: dict[str, str] = Field(
        default_factory=lambda: {
            "cctv-frame-sampler": VIDEO_PACKETS,
            "cctv-detector": FRAMES,
            "cctv-alert-router": DETECTIONS,
        }
    )

    @model_validator(mode="after")
    def _has_logins(self) -> ConsoleSettings:
        if self.dev_users_dir is None:
            if self.users_file is None:
                raise ValueError(
                    "no users: set CCTV_USERS_FILE to a users YAML (see docs/console.md), "
                    "or CCTV_DEV_USERS_DIR (or --dev-users DIR) for generated dev logins"
                )
            if self.session_key is None and self.session_key_file is None:
                raise ValueError(
                    "no session key: set CCTV_SESSION_KEY or CCTV_SESSION_KEY_FILE (a Secret, "
                    "the same for every replica), e.g. `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))'`"
                )
        if self.session_key is not None and len(self.session_key.get_secret_value()) < 32:
            raise ValueError("CCTV_SESSION_KEY is shorter than 32 characters; use a long random key")
        return self

    def read_session_key(self) -> str:
        if self.session_key is not None:
            return self.session_key.get_secret_value()
        assert self.session_key_file is not None
        key = self.session_key_file.read_text().strip()
        if len(key) < 32:
            raise ValueError(f"session key in {self.session_key_file} is shorter than 32 characters")
        return key
