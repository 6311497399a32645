"""Live-video shares end to end on real parts: a real broker and registry, the real ingest service pulling
the real sample clip as a live file camera, the real share gateway and console as processes. A share link
is opened over HTTP by PyAV (as VLC or ffplay would) and must decode the camera's frames; revocation,
expiry and a viewer's attempt are refused; every act is on cctv.audit.v1."""

from __future__ import annotations

import csv
import io
import random
import time
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from cctv.devstack.services import ServiceProcess
from cctv.inventory import publish
from libs.cameras import CameraEntry, GeoPoint
from libs.kafka import create_topics
from libs.serde import make_serde
from libs.settings import KafkaSettings, RegistrySettings
from libs.topics import AUDIT, pipeline_topics
from tests.assets_fetch import fetch_stills
from tests.console_helpers import ConsoleProcess, write_users
from tests.kafka_helpers import TopicWatcher, free_port, wait_for
from tests.masking_helpers import shared_detail

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-h264.mp4"
SHARE_KEY = "test-share-key-" + "s" * 40
ZIDANE_FACES = [[895, 95, 1065, 295], [490, 245, 665, 455]]  # tests/data/masking/faces.json


def still_clip(still: Path, target: Path, seconds: int = 4, fps: int = 5) -> Path:
    """A real still as an H.264 camera clip (a keyframe every second), to compare masked frames against."""
    picture = Image.open(still).convert("RGB")
    with av.open(str(target), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = picture.width, picture.height, "yuv420p"
        stream.options = {"g": str(fps), "bf": "0", "crf": "18"}
        frame = av.VideoFrame.from_image(picture)
        for index in range(seconds * fps):
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return target


class Stack:
    def __init__(self, kafka: KafkaSettings, registry_url: str, tmp: Path) -> None:
        self.kafka, self.tmp = kafka, tmp
        self.serde = make_serde(RegistrySettings(url=registry_url))
        suffix = uuid.uuid4().hex[:8]
        # A place of its own: cameras another run left on this broker are not within the test's radius.
        self.lat, self.lon = 37.4 + random.random() * 0.2, 126.9 + random.random() * 0.2
        self.camera, self.faces_camera, self.far_camera = f"sh-{suffix}", f"sh-faces-{suffix}", f"sh-far-{suffix}"
        routes = tmp / "routes.yaml"
        routes.write_text(
            yaml.safe_dump(
                {
                    "routes": [
                        {"name": "all-intrusions", "rule_types": ["intrusion"], "destinations": ["police", "fire"]}
                    ],
                    "endpoints": {"police": {"unmasked": True}},
                }
            )
        )
        self.gateway_port = free_port()
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.common = {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "CCTV_REGISTRY__URL": registry_url,
            "CCTV_LOG__FORMAT": "text",
        }
        self.console_env = self.common | {
            "CCTV_USERS_FILE": str(write_users(tmp / "users.yaml", [])),
            "CCTV_SESSION_KEY": "test-session-key-" + "x" * 32,
            "CCTV_SHARES__KEY": SHARE_KEY,
            "CCTV_SHARES__GATEWAY_URL": self.gateway_url,
            "CCTV_SHARES__ROUTES_FILE": str(routes),
        }
        self.gateway_env = self.common | {
            "CCTV_HTTP__PORT": "0",
            "CCTV_EDGE__PORT": str(self.gateway_port),
            "CCTV_EDGE__HOST": "127.0.0.1",
            "CCTV_SHARE_KEY": SHARE_KEY,
        }


@pytest.fixture(scope="module")
def stack(kafka_broker, schema_registry, tmp_path_factory) -> Iterator[Stack]:
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)
    create_topics(kafka, pipeline_topics())
    tmp = tmp_path_factory.mktemp("shares")
    stack = Stack(kafka, schema_registry.url, tmp)
    faces_clip = still_clip(fetch_stills()["zidane.jpg"], tmp / "zidane.mp4")
    entries = [
        CameraEntry(
            camera_id=stack.camera,
            stream_url=f"file://{SAMPLE}",
            loop=True,
            realtime=True,
            location=GeoPoint(lat=stack.lat, lon=stack.lon),
        ),
        CameraEntry(
            camera_id=stack.faces_camera,
            stream_url=f"file://{faces_clip}",
            loop=True,
            realtime=True,
            location=GeoPoint(lat=stack.lat + 0.0001, lon=stack.lon + 0.0001),
        ),
        CameraEntry(
            camera_id=stack.far_camera,
            stream_url="file:///dev/null",
            location=GeoPoint(lat=stack.lat + 0.01, lon=stack.lon),  # 1.1 km away
        ),
    ]
    publish(kafka, stack.serde, entries)
    ingest = ServiceProcess(
        "ingest",
        stack.common | {"CCTV_HTTP__PORT": "0", "CCTV_GROUP_ID": f"cctv-ingest-{stack.camera}"},
        tmp / "ingest.log",
    ).start()
    gateway = ServiceProcess(
        "share-gateway", stack.gateway_env, tmp / "gateway.log", module="services.share_gateway.main"
    ).start()
    console = ConsoleProcess(stack.console_env, tmp / "console.log").start()
    stack.console = console  # type: ignore[attr-defined]
    try:
        yield stack
    finally:
        console.stop()
        gateway_exit = gateway.stop()
        ingest.stop()
        publish(kafka, stack.serde, [], [c.camera_id for c in entries])
        assert gateway_exit == 0, gateway.log_text()[-3000:]


@pytest.fixture(scope="module")
def admin(stack: Stack) -> httpx.Client:
    return stack.console.client("admin")  # type: ignore[attr-defined]


@pytest.fixture
def audit(stack: Stack) -> Iterator[TopicWatcher]:
    with TopicWatcher(stack.kafka, AUDIT, "AuditRecord", stack.serde) as watcher:
        yield watcher


def audited(watcher: TopicWatcher, what: str, **match: object) -> dict:
    def found() -> dict | None:
        return next(
            (r for r in watcher.snapshot() if r["what"] == what and all(str(match[k]) in str(r.get(k)) for k in match)),
            None,
        )

    return wait_for(found, 30, f"audit record {what} {match}")


def decoded_frames(playlist_url: str, count: int) -> list[av.VideoFrame]:
    """Open the share's playlist over HTTP as any player would and decode `count` frames."""
    frames: list[av.VideoFrame] = []
    with av.open(playlist_url, timeout=20) as container:
        for frame in container.decode(video=0):
            frames.append(frame)
            if len(frames) >= count:
                break
    return frames


def share(admin: httpx.Client, **body: object) -> dict:
    response = admin.post("/api/v1/shares", json={"purpose": "112 report: person collapsed", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_share_link_plays_the_cameras_frames_and_stops_within_5_s_of_revocation(
    stack: Stack, admin: httpx.Client, audit: TopicWatcher
) -> None:
    # "within 50 m of the incident": the two cameras there, not the far one
    created = share(admin, lat=stack.lat, lon=stack.lon, radius_m=50, agency="police", unmasked=True)
    by_camera = {s["camera_id"]: s for s in created["shares"]}
    assert set(by_camera) == {stack.camera, stack.faces_camera}
    link = by_camera[stack.camera]
    assert link["status"] == "live" and link["masked"] is False and link["playlist_url"].startswith(stack.gateway_url)
    assert SHARE_KEY not in str(created)

    frames = decoded_frames(link["playlist_url"], 20)
    assert len(frames) == 20 and (frames[0].width, frames[0].height) == (768, 576)  # the sample's own frames
    assert float(frames[-1].time - frames[0].time) > 1.0  # frames of a moving stream, not one repeated picture
    page = httpx.get(link["url"].rstrip("/"), timeout=10, follow_redirects=True)  # pasted without the slash
    assert (
        page.status_code == 200
        and '<video src="index.m3u8"' in page.text
        and "http" not in page.text.split("<body>")[1].split("index.m3u8")[0]
    )

    opened = audited(audit, "share.opened.unmasked", camera_id=stack.camera, detail=link["share_id"])
    assert opened["actor"] == "police" and opened["client_address"] == "127.0.0.1"
    audited(audit, "share.created.unmasked", camera_id=stack.camera, detail=link["share_id"])
    # Once per viewing session, not once per segment: the player fetched many segments.
    assert (
        sum(1 for r in audit.snapshot() if r["what"].startswith("share.opened") and link["share_id"] in r["detail"])
        == 1
    )

    forged = link["playlist_url"].replace("/s/", "/s/x")
    assert httpx.get(forged, timeout=10).status_code == 403

    assert admin.delete(f"/api/v1/shares/{link['share_id']}").status_code == 200
    revoked_at = time.monotonic()
    response = wait_for(
        lambda: (r := httpx.get(link["playlist_url"], timeout=10)).status_code == 410 and r, 5, "the link refused"
    )
    assert "revoked" in response.text and time.monotonic() - revoked_at < 5
    assert httpx.get(link["url"] + "0.ts", timeout=10).status_code == 410
    audited(audit, "share.revoked", camera_id=stack.camera, detail=link["share_id"])
    ended = admin.get("/api/v1/shares", params={"status": "ended", "camera_id": stack.camera}).json()["shares"]
    assert [s["state"] for s in ended if s["share_id"] == link["share_id"]] == ["REVOKED"]
    assert admin.delete(f"/api/v1/shares/{link['share_id']}").status_code == 409


def test_a_share_expires_on_time_and_the_expiry_is_recorded(
    stack: Stack, admin: httpx.Client, audit: TopicWatcher
) -> None:
    link = share(admin, camera_ids=[stack.camera], agency="fire", lifetime_s=6)["shares"][0]
    assert link["masked"] is True  # fire has no unmasked release
    deadline = link["expires_at"] / 1000
    assert httpx.get(link["playlist_url"], timeout=15).status_code in (200, 503)  # live until the deadline
    response = wait_for(
        lambda: (r := httpx.get(link["playlist_url"], timeout=10)).status_code == 410 and r, 20, "the link expired"
    )
    assert "expired" in response.text and time.time() < deadline + 5
    expired = audited(audit, "share.expired", camera_id=stack.camera, detail=link["share_id"])
    assert expired["timestamp"] == link["expires_at"]
    assert admin.get("/api/v1/shares", params={"camera_id": stack.camera}).json()["count"] == 0 or all(
        s["share_id"] != link["share_id"]
        for s in admin.get("/api/v1/shares", params={"camera_id": stack.camera}).json()["shares"]
    )


def test_a_viewer_cannot_share_and_the_refusal_is_audited(stack: Stack, audit: TopicWatcher) -> None:
    viewer = stack.console.client("viewer")  # type: ignore[attr-defined]
    response = viewer.post(
        "/api/v1/shares", json={"camera_ids": [stack.camera], "agency": "police", "purpose": "curious"}
    )
    assert response.status_code == 403
    denied = audited(audit, "access_denied", actor="viewer")
    assert denied["outcome"] == "DENIED" and "/api/v1/shares" in denied["detail"]
    assert viewer.get("/api/v1/shares").status_code == 403


def test_bad_share_requests_are_refused_with_the_reason(stack: Stack, admin: httpx.Client) -> None:
    base = {"camera_ids": [stack.camera], "purpose": "112 report"}
    assert "unknown agency" in admin.post("/api/v1/shares", json=base | {"agency": "press"}).text
    unmasked = admin.post("/api/v1/shares", json=base | {"agency": "fire", "unmasked": True})
    assert unmasked.status_code == 403 and "unmasked" in unmasked.text
    too_long = admin.post("/api/v1/shares", json=base | {"agency": "fire", "lifetime_s": 10 * 24 * 3600})
    assert too_long.status_code == 422 and "maximum" in too_long.text
    assert admin.post("/api/v1/shares", json={"agency": "fire", "purpose": "x" * 5}).status_code == 422
    assert admin.get("/api/v1/shares", params={"camera_id": stack.camera}).status_code == 200


def test_a_masked_share_blurs_the_faces_of_a_real_still(stack: Stack, admin: httpx.Client) -> None:
    link = share(admin, camera_ids=[stack.faces_camera], agency="fire")["shares"][0]
    assert link["masked"] is True
    original = np.asarray(Image.open(fetch_stills()["zidane.jpg"]).convert("RGB"))
    # The first masked share loads the face, people and plate models: wait for its first segment.
    wait_for(lambda: httpx.get(link["playlist_url"], timeout=40).status_code == 200, 120, "the first masked segment")
    frame = decoded_frames(link["playlist_url"], 1)[0]
    masked = frame.to_ndarray(format="rgb24")
    assert masked.shape == original.shape
    for x1, y1, x2, y2 in ZIDANE_FACES:
        inner = [x1 + (x2 - x1) // 4, y1 + (y2 - y1) // 4, x2 - (x2 - x1) // 4, y2 - (y2 - y1) // 4]
        assert shared_detail(original, masked, inner) < 0.3, (x1, y1)
    # Away from the faces it is the same picture (only encoding noise).
    assert shared_detail(original, masked, [0, 560, 1280, 720]) > 0.8
    admin.delete(f"/api/v1/shares/{link['share_id']}")


def test_the_share_page_loads_nothing_from_elsewhere_and_a_missing_token_is_refused(stack: Stack) -> None:
    assert httpx.get(f"{stack.gateway_url}/s/not-a-token/index.m3u8", timeout=10).status_code == 403
    assert httpx.get(f"{stack.gateway_url}/s/not-a-token/", timeout=10).status_code == 403
    body = io.StringIO(httpx.get(f"{stack.gateway_url}/s/x/", timeout=10).text).read()
    assert "valid" in body


def test_the_ledger_view_filters_share_acts_and_exports_csv(stack: Stack, admin: httpx.Client) -> None:
    link = share(admin, camera_ids=[stack.camera], agency="police", unmasked=True)["shares"][0]
    assert httpx.get(link["playlist_url"], timeout=20).status_code == 200
    assert admin.delete(f"/api/v1/shares/{link['share_id']}").status_code == 200

    def acts() -> list[str] | None:
        page = admin.get("/api/v1/ledger", params={"camera_id": stack.camera, "what": "share", "since": "10m"})
        assert page.status_code == 200, page.text
        mine = [r["what"] for r in reversed(page.json()["records"]) if link["share_id"] in (r["detail"] or "")]
        return mine if "share.revoked" in mine and any(a.startswith("share.opened") for a in mine) else None

    assert wait_for(acts, 30, "the share's acts in the ledger") == [
        "share.created.unmasked",
        "share.opened.unmasked",
        "share.revoked",
    ]
    police_only = admin.get("/api/v1/ledger", params={"agency": "police", "since": "10m"}).json()["records"]
    assert police_only and {r["actor"] for r in police_only} == {"police"}  # opened by the agency itself
    export = admin.get(
        "/api/v1/ledger", params={"camera_id": stack.camera, "what": "share", "since": "10m", "format": "csv"}
    )
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["what"] for r in rows if link["share_id"] in r["detail"]} >= {"share.created.unmasked", "share.revoked"}
    assert admin.get("/api/v1/ledger", params={"since": "yesterday-ish"}).status_code == 422
    viewer = stack.console.client("viewer")  # type: ignore[attr-defined]
    assert viewer.get("/api/v1/ledger").status_code == 403
