"""The console's side of live-video shares (the API is services/console/routes/shares.py): settings, the
request, and the book of shares fed from the compacted cctv.shares.v1, so every console replica and every
share-gateway replica sees a creation or revocation within a poll. Links are played by
services/share_gateway."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import HTTPException
from pydantic import BaseModel, Field, SecretStr, model_validator

from libs.kafka import make_producer
from libs.serde import AvroSerde
from libs.settings import KafkaSettings
from libs.shares import SCHEMA, ShareBook, ShareFollower, ShareTokens, status_of
from libs.topics import SHARES
from services.alert_router.routing import DEFAULT_ROUTES_PATH, RoutingConfigError, RoutingTableLoader


class ConsoleShareSettings(BaseModel):
    """CCTV_SHARES__...: live-video shares. Off (503 with the reason) until a key and a gateway URL are set."""

    key: SecretStr | None = Field(default=None, description="signs share links; the gateway's CCTV_SHARE_KEY")
    key_file: Path | None = None
    gateway_url: str | None = Field(default=None, description="public base URL of the share gateway")
    routes_file: Path = Field(default=DEFAULT_ROUTES_PATH, description="agencies = its destinations")
    default_lifetime_s: int = Field(default=30 * 60, gt=0)
    max_lifetime_s: int = Field(default=4 * 3600, gt=0, le=24 * 3600, description="cctv.shares.v1 keeps 7 days")
    max_cameras: int = Field(default=20, ge=1, le=200, description="cameras per share request")

    @model_validator(mode="after")
    def _lifetimes(self) -> ConsoleShareSettings:
        if self.default_lifetime_s > self.max_lifetime_s:
            raise ValueError("shares.default_lifetime_s must not exceed shares.max_lifetime_s")
        if self.gateway_url is not None and not self.gateway_url.startswith(("http://", "https://")):
            raise ValueError(f"shares.gateway_url must be an http(s):// URL, got {self.gateway_url!r}")
        return self

    def read_key(self) -> str | None:
        if self.key is not None:
            return self.key.get_secret_value()
        if self.key_file is None:
            return None
        try:
            return self.key_file.read_text(encoding="utf-8").strip() or None
        except OSError as error:
            raise ValueError(f"cannot read the share key file {self.key_file}: {error.strerror}") from None


class ShareRequest(BaseModel):
    camera_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list, max_length=200)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    radius_m: float | None = Field(default=None, gt=0, le=5000)
    agency: str = Field(min_length=1, max_length=64)
    purpose: str = Field(min_length=3, max_length=500)
    lifetime_s: int | None = Field(default=None, gt=0)
    alert_id: str | None = Field(default=None, max_length=200)
    unmasked: bool = False  # only for agencies whose routing entry allows unmasked release

    @model_validator(mode="after")
    def _cameras_or_area(self) -> ShareRequest:
        area = [v is not None for v in (self.lat, self.lon, self.radius_m)]
        if any(area) and not all(area):
            raise ValueError("an area needs all of lat, lon and radius_m")
        if not self.camera_ids and not all(area):
            raise ValueError("give camera_ids, or lat, lon and radius_m")
        return self


class ConsoleShares:
    """The console's side: a book fed from the topic, a producer, the agencies from the routing file."""

    def __init__(self, settings: ConsoleShareSettings, kafka: KafkaSettings, serde: AvroSerde) -> None:
        self.settings, self.serde = settings, serde
        self.problem: str | None = None  # a configuration error: shares answer 503 with it
        self.tokens: ShareTokens | None = None
        try:
            key = settings.read_key()
            self.tokens = ShareTokens(key) if key else None
            self.routes = RoutingTableLoader(settings.routes_file)
        except ValueError as error:  # RoutingConfigError is one
            self.problem = f"live-video shares are off: {error}"
        self.book = ShareBook()
        self.follower = ShareFollower(kafka, serde, SHARES, self.book, "console-shares").start()
        self.producer = make_producer(kafka, "console-shares")

    def unavailable(self) -> str | None:
        if self.problem is not None:
            return self.problem
        if self.tokens is None:
            return "live-video shares are off: set CCTV_SHARES__KEY (the share gateway's CCTV_SHARE_KEY)"
        if self.settings.gateway_url is None:
            return "live-video shares are off: set CCTV_SHARES__GATEWAY_URL (the share gateway's public URL)"
        return None

    def agencies(self) -> dict[str, bool]:
        """Destination → may receive unmasked video."""
        try:
            self.routes.reload_if_changed()
        except RoutingConfigError:
            pass  # the previous table stays in force; the loader logged why
        table = self.routes.table
        names = set(table.destinations()) | set(table.endpoints)
        return {name: bool(table.endpoints.get(name) and table.endpoints[name].unmasked) for name in sorted(names)}

    def publish(self, record: dict[str, Any]) -> None:
        value = self.serde.serialize(SHARES, SCHEMA, record)
        self.producer.produce(SHARES, key=record["share_id"].encode(), value=value)
        if self.producer.flush(10):
            raise HTTPException(503, "the share could not be stored (Kafka unavailable); nothing was released")
        self.book.apply(record["share_id"], record)

    def view(self, record: dict[str, Any], now_ms: int) -> dict[str, Any]:
        row = {k: v for k, v in record.items()} | {"status": status_of(record, now_ms)}
        if row["status"] == "live" and self.tokens is not None and self.settings.gateway_url:
            base = f"{self.settings.gateway_url.rstrip('/')}/s/{self.tokens.token(record['share_id'])}/"
            row |= {"url": base, "playlist_url": base + "index.m3u8"}
        return row

    def wait_caught_up(self, timeout_s: float = 10.0) -> None:
        """Answers only from the whole topic: a share made on another replica must not look unknown."""
        deadline = time.monotonic() + timeout_s
        while not self.book.caught_up:
            if time.monotonic() > deadline or not self.follower.alive():
                raise HTTPException(503, f"shares are still being read from {SHARES}; try again shortly")
            time.sleep(0.05)

    def stop(self) -> None:
        self.follower.stop()
        self.producer.flush(5)


_CREATED = threading.Lock()


def console_shares(
    app_state: Any, settings: ConsoleShareSettings, kafka: KafkaSettings, serde: AvroSerde
) -> ConsoleShares:
    """One ConsoleShares per app, started with the first share request."""
    with _CREATED:
        shares = getattr(app_state, "shares", None)
        if shares is None:
            shares = app_state.shares = ConsoleShares(settings, kafka, serde)
        return shares
