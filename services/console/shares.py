"""Live-video shares in the console API (supervisors): create one signed, revocable link per camera for an
agency, list shares, revoke. State lives on the compacted cctv.shares.v1, so every console replica and
every share-gateway replica sees a revocation within a poll; links are played by services/share_gateway.

POST   /api/v1/shares        cameras by id or within radius_m of lat/lon, agency, purpose, lifetime
GET    /api/v1/shares        list (filters: state, agency, camera_id)
DELETE /api/v1/shares/{id}   revoke
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, SecretStr, model_validator

from libs.kafka import make_producer
from libs.serde import AvroSerde
from libs.settings import KafkaSettings
from libs.shares import SCHEMA, ShareBook, ShareFollower, ShareTokens, ended, new_share, status_of
from libs.topics import SHARES
from services.alert_router.routing import DEFAULT_ROUTES_PATH, RoutingConfigError, RoutingTableLoader
from services.console.auth import allowed
from services.console.users import User
from services.console.wall import cameras_within


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
        return self.key_file.read_text(encoding="utf-8").strip() if self.key_file is not None else None


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
        key = settings.read_key()
        self.tokens = ShareTokens(key) if key else None
        self.routes = RoutingTableLoader(settings.routes_file)
        self.book = ShareBook()
        self.follower = ShareFollower(kafka, serde, SHARES, self.book).start()
        self.producer = make_producer(kafka, "console-shares")

    def unavailable(self) -> str | None:
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

    def stop(self) -> None:
        self.follower.stop()
        self.producer.flush(5)


Audit = Callable[..., Any]  # ConsoleFeeds.audit
Deny = Callable[..., HTTPException]


def shares_router(
    shares: ConsoleShares, state: Any, audit: Audit, deny: Deny, current_user: Callable[..., User]
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/shares", tags=["shares"])
    Authed = Annotated[User, Depends(current_user)]

    def client(request: Request) -> str | None:
        return request.client.host if request.client else None

    def need_supervisor(request: Request, user: User, what: str) -> None:
        if not allowed(user.role, "share"):
            raise deny(request, user, f"{what} needs supervisor or admin", 403, f"role {user.role!r} may not {what}")
        reason = shares.unavailable()
        if reason is not None:
            raise HTTPException(503, reason)

    def chosen_cameras(body: ShareRequest, user: User) -> list[str]:
        with state.lock:
            visible = [c for c in state.cameras.values() if c.in_inventory and user.can_see(c.camera_id)]
            ids = list(dict.fromkeys(body.camera_ids))
            unknown = [c for c in ids if c not in {v.camera_id for v in visible}]
            if unknown:
                raise HTTPException(404, f"no camera(s) {unknown} that you may see")
            if body.lat is not None and body.lon is not None and body.radius_m is not None:
                ids += [c.camera_id for c, _d in cameras_within(visible, body.lat, body.lon, body.radius_m)]
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise HTTPException(422, "no camera with a location lies within that radius")
        if len(ids) > shares.settings.max_cameras:
            raise HTTPException(422, f"{len(ids)} cameras: at most {shares.settings.max_cameras} per share request")
        return ids

    @router.post("", status_code=201)
    def create(body: ShareRequest, user: Authed, request: Request) -> dict[str, Any]:
        """One signed, revocable link per camera, for one agency and purpose, until the lifetime ends."""
        need_supervisor(request, user, "share live video")
        agencies = shares.agencies()
        if body.agency not in agencies:
            raise HTTPException(422, f"unknown agency {body.agency!r}; one of {sorted(agencies)} (routing file)")
        if body.unmasked and not agencies[body.agency]:
            raise deny(
                request, user, f"unmasked share for {body.agency}", 403,
                f"{body.agency} may not receive unmasked video (its routing entry has no `unmasked: true`)",
            )  # fmt: skip
        lifetime = body.lifetime_s or shares.settings.default_lifetime_s
        if lifetime > shares.settings.max_lifetime_s:
            raise HTTPException(422, f"lifetime_s {lifetime} exceeds the maximum {shares.settings.max_lifetime_s}")
        now_ms = int(time.time() * 1000)
        created = []
        for camera_id in chosen_cameras(body, user):
            record = new_share(
                camera_id,
                body.agency,
                body.purpose,
                created_by=user.name,
                lifetime_s=lifetime,
                masked=not body.unmasked,
                alert_id=body.alert_id,
                now_ms=now_ms,
            )
            shares.publish(record)
            audit(
                user.name,
                "share.created" if record["masked"] else "share.created.unmasked",
                True,
                role=user.role,
                camera_id=camera_id,
                alert_id=body.alert_id,
                detail=f"share {record['share_id']} to {body.agency} for {lifetime} s; "
                f"masked={str(record['masked']).lower()}; purpose: {body.purpose}",
                client=client(request),
            )
            created.append(shares.view(record, now_ms))
        return {"shares": created, "count": len(created)}

    @router.get("")
    def list_shares(
        user: Authed,
        request: Request,
        status: Literal["live", "ended", "all"] = "live",
        agency: str | None = None,
        camera_id: str | None = None,
        limit: int = Query(200, ge=1, le=2000),
    ) -> dict[str, Any]:
        """Shares newest first; links only for live ones."""
        need_supervisor(request, user, "list shares")
        now_ms = int(time.time() * 1000)
        rows = [
            shares.view(r, now_ms)
            for r in sorted(shares.book.all(), key=lambda r: r["created_at"], reverse=True)
            if (agency is None or r["agency"] == agency)
            and (camera_id is None or r["camera_id"] == camera_id)
            and (status == "all" or (status_of(r, now_ms) == "live") == (status == "live"))
        ]
        return {"shares": rows[:limit], "count": len(rows)}

    @router.delete("/{share_id}")
    def revoke(share_id: str, user: Authed, request: Request) -> dict[str, Any]:
        """Revoke: the link stops at its next request on every gateway replica (within ~1 s)."""
        need_supervisor(request, user, "revoke shares")
        record = shares.book.get(share_id)
        if record is None:
            raise HTTPException(404, f"no share {share_id!r}")
        now_ms = int(time.time() * 1000)
        if status_of(record, now_ms) != "live":
            raise HTTPException(409, f"share {share_id} already ended ({status_of(record, now_ms)})")
        revoked = ended(record, "REVOKED", user.name, now_ms)
        shares.publish(revoked)
        audit(
            user.name,
            "share.revoked",
            True,
            role=user.role,
            camera_id=record["camera_id"],
            alert_id=record.get("alert_id"),
            detail=f"share {share_id} to {record['agency']}",
            client=client(request),
        )
        return shares.view(revoked, now_ms)

    @router.get("/agencies")
    def agencies(user: Authed, request: Request) -> dict[str, Any]:
        """Agencies a share can go to, and whether each may receive unmasked video."""
        need_supervisor(request, user, "list agencies")
        return {
            "agencies": [{"name": n, "unmasked_allowed": u} for n, u in shares.agencies().items()],
            "default_lifetime_s": shares.settings.default_lifetime_s,
            "max_lifetime_s": shares.settings.max_lifetime_s,
        }

    return router
