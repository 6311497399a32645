"""How routed alerts leave the centre: per destination, the HTTP endpoints (webhooks) they are POSTed to.

Written in the routing file next to the routes (`endpoints:`), so one file says who gets what and where
it goes: the alert-router validates it with the routes, the dispatcher delivers by it. Secrets are
references (an environment variable or a mounted Secret file), never inline values.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.topics import DESTINATION_PATTERN, DESTINATION_RULE


class SecretRef(BaseModel):
    """Where the HMAC secret is: exactly one of an environment variable or a file (a mounted Secret)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference needs exactly one of `env` (variable name) or `file` (path)")
        return self

    def read(self) -> bytes:
        """The secret's bytes; raises ValueError saying which reference is empty or missing."""
        if self.env is not None:
            value = os.environ.get(self.env, "")
            if not value:
                raise ValueError(f"environment variable {self.env} (webhook secret) is unset or empty")
            return value.encode()
        assert self.file is not None
        try:
            value = self.file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(f"cannot read webhook secret file {self.file}: {error.strerror}") from None
        if not value:
            raise ValueError(f"webhook secret file {self.file} is empty")
        return value.encode()


class ClientCertificate(BaseModel):
    """mTLS: the client certificate and key the dispatcher presents to an agency's endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path
    key_file: Path


class WebhookEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str
    secret: SecretRef
    client_cert: ClientCertificate | None = None
    ca_file: Path | None = None  # verify the agency's server against this CA instead of the system store
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    # Attempts before the event goes to the dead-letter topic (delivery of later events then resumes).
    max_attempts: int = Field(default=8, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {url[:20]!r}")
        if "@" in url.split("/", 3)[2]:
            raise ValueError("webhook url must not carry credentials; use `secret` or `client_cert`")
        return url


class DestinationDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    webhooks: list[WebhookEndpoint] = Field(default_factory=list)
    # Release snapshots without masking (e.g. police with a warrant); every such release is audited.
    unmasked: bool = False

    @field_validator("webhooks")
    @classmethod
    def _names_unique(cls, webhooks: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        names = [w.name for w in webhooks]
        if len(set(names)) != len(names):
            raise ValueError(f"webhook names {names} must be unique within a destination")
        return webhooks


def check_destination_names(endpoints: dict[str, DestinationDelivery]) -> dict[str, DestinationDelivery]:
    bad = [d for d in endpoints if not DESTINATION_PATTERN.match(d)]
    if bad:
        raise ValueError(f"endpoint destinations {bad} are not topic-safe; {DESTINATION_RULE}")
    return endpoints
