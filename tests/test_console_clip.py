"""The incident's evidence clip in the console, against the real stack: real broker and registry, the
real S3 server (SeaweedFS) holding a clip cut from the real sample and its masked copy (real models), the
console as its own process, and real headless Chromium playing the clip through the console.

Operators play and download the masked copy (HTTP Range works, so the player seeks); the unmasked
original is refused to them (403, audited) and given to an admin only with a reason; every playback and
download is on cctv.audit.v1."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By

from cctv.devstack.s3 import ObjectStore
from libs.evidence_access import RELEASE
from libs.evidence_store import EvidenceStore
from libs.kafka import create_topics, make_producer
from libs.serde import make_serde
from libs.settings import KafkaSettings, RegistrySettings
from libs.topics import ALERTS, AUDIT, pipeline_topics
from services.clip_writer.release import Masker, make_masked_copy
from services.clip_writer.settings import MaskedCopySettings
from tests.console_helpers import PASSWORDS, ConsoleProcess, write_users
from tests.kafka_helpers import TopicWatcher, alert_record, wait_for
from tests.test_clip_writer_service import SIGNING_KEY, object_store, s3_settings  # noqa: F401 (fixture)
from tests.test_console_browser import DOCS, browser, click, log_in
from tests.test_evidence_release import store_clip

S = 1_000_000


@pytest.fixture(scope="module")
def stack(kafka_broker, schema_registry, object_store: ObjectStore, tmp_path_factory) -> Iterator[dict]:  # noqa: F811
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)
    create_topics(kafka, pipeline_topics())
    unique, tmp = uuid.uuid4().hex[:8], tmp_path_factory.mktemp("console-clip")
    camera, alert_id, bucket = f"clipcam-{unique}", f"clip-{unique}", f"console-{unique}"
    s3 = s3_settings(object_store, bucket)
    store = EvidenceStore(s3)
    base = time.time_ns() // 1000 - 300 * S
    manifest = store_clip(store, alert_id, base, 29.0, 31.0, roll_s=3.0)  # 26 s .. 34 s of the sample
    make_masked_copy(store, alert_id, Masker(MaskedCopySettings()), SIGNING_KEY, "clip-writer")
    # An incident older than the console's in-memory window: its clip is stored, its alert never reaches
    # this console (as after the 72 h window or a restart with a short retention).
    old_id = f"clip-old-{unique}"
    store_clip(store, old_id, base, 29.0, 30.0, roll_s=1.0)
    make_masked_copy(store, old_id, Masker(MaskedCopySettings()), SIGNING_KEY, "clip-writer")
    serde = make_serde(RegistrySettings(url=schema_registry.url))
    producer = make_producer(kafka, "test-alerts")
    started = base + 29 * S
    for kind, sequence, ended in (("NEW", 0, None), ("END", 1, base + 31 * S)):
        record = alert_record(
            alert_id, camera, kind, sequence, started_us=started, ended_us=ended, camera_name="Campus road"
        )
        producer.produce(ALERTS, key=alert_id.encode(), value=serde.serialize(ALERTS, "Alert", record))
    assert producer.flush(30) == 0
    console = ConsoleProcess(
        {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "CCTV_REGISTRY__URL": schema_registry.url,
            "CCTV_LOG__FORMAT": "text",
            "CCTV_USERS_FILE": str(write_users(tmp / "users.yaml", [f"other-{unique}"])),
            "CCTV_SESSION_KEY": "clip-test-key-" + "z" * 32,
            "CCTV_S3__ENDPOINT_URL": object_store.endpoint,
            "CCTV_S3__BUCKET": bucket,
            "CCTV_S3__ACCESS_KEY_ID": object_store.access_key,
            "CCTV_S3__SECRET_ACCESS_KEY": object_store.secret_key,
        },
        tmp / "console.log",
    ).start()
    audit = TopicWatcher(kafka, AUDIT, "AuditRecord", serde, keys={alert_id.encode()})
    old_audit = TopicWatcher(
        kafka, AUDIT, "AuditRecord", serde, keep=lambda r: r["alert_id"] == old_id, keys={old_id.encode(), b"partner"}
    )
    release = store.get(store.key(alert_id, RELEASE))
    assert release is not None
    info = {
        "console": console,
        "alert_id": alert_id,
        "store": store,
        "manifest": manifest,
        "masked_key": store.key(alert_id, "masked/segment-000.mp4"),
        "audit": audit,
        "old_id": old_id,
        "old_audit": old_audit,
        "tmp": tmp,
        "drivers": [],
    }
    try:
        with console.client("operator") as operator:
            wait_for(
                lambda: operator.get(f"/api/v1/incidents/{alert_id}").status_code == 200,
                60,
                "the incident in the console",
            )
        yield info
    finally:
        for driver in info["drivers"]:
            driver.quit()
        audit.close()
        old_audit.close()
        assert console.stop() == 0, (tmp / "console.log").read_text()[-3000:]


def audit_of(stack: dict, count: int) -> list[tuple[str, str, str, str]]:
    records = wait_for(
        lambda: len(stack["audit"].snapshot()) >= count and stack["audit"].snapshot(), 30, f"{count} audit records"
    )
    return [(r["actor"], r["what"], r["outcome"], r["detail"] or "") for r in records]


def test_the_clip_api_serves_the_masked_copy_with_ranges_and_the_original_only_to_a_supervisor_with_a_reason(
    stack: dict,
) -> None:
    console: ConsoleProcess = stack["console"]
    alert_id, store = stack["alert_id"], stack["store"]
    masked, original = store.get(stack["masked_key"]), store.get(stack["manifest"]["objects"][0]["key"])
    assert masked and original and masked != original
    video = f"/api/v1/incidents/{alert_id}/clip/0.mp4"
    with console.client("operator") as operator, console.client("admin") as admin, console.client("viewer") as viewer:
        described = operator.get(f"/api/v1/incidents/{alert_id}/clip").json()
        assert described["masked_ready"] and not described["may_fetch_original"]
        assert described["segments"][0]["masked_url"] == video

        first = operator.get(video, headers={"Range": "bytes=0-99"})
        assert first.status_code == 206 and first.content == masked[:100]
        assert (
            first.headers["content-range"] == f"bytes 0-99/{len(masked)}" and first.headers["accept-ranges"] == "bytes"
        )
        rest = operator.get(video, headers={"Range": "bytes=100-"})
        assert rest.status_code == 206 and first.content + rest.content == masked
        tail = operator.get(video, headers={"Range": "bytes=-50"})
        assert tail.content == masked[-50:]
        whole = operator.get(video)
        assert whole.status_code == 200 and whole.content == masked
        assert operator.get(video, headers={"Range": f"bytes={len(masked)}-"}).status_code == 416

        refused = operator.get(video, params={"variant": "original", "reason": "curious"})
        assert refused.status_code == 403 and "supervisor" in refused.json()["detail"]
        assert viewer.get(video).status_code == 403
        assert admin.get(video, params={"variant": "original"}).status_code == 403  # no reason given
        # With a reason, right after that refusal: allowed, and audited (the refusal handed nothing out).
        played = admin.get(
            video, params={"variant": "original", "reason": "case 2026-1130"}, headers={"Range": "bytes=0-9"}
        )
        assert played.status_code == 206 and played.content == original[:10]
        given = admin.get(video, params={"variant": "original", "reason": "case 2026-1130", "download": "1"})
        assert given.status_code == 200 and given.content == original
        assert given.headers["content-disposition"] == f'attachment; filename="{alert_id}-original-000.mp4"'
        assert operator.get(f"/api/v1/incidents/{alert_id}/clip/1.mp4").status_code == 404
        assert httpx.get(f"{console.url}{video}").status_code == 401

    records = audit_of(stack, 6)
    # One view record for the operator's five range requests; each refusal and the original's release.
    assert [r[:3] for r in records] == [
        ("operator", "evidence.view", "ALLOWED"),
        ("operator", "evidence.view", "DENIED"),
        ("viewer", "evidence.view", "DENIED"),
        ("admin", "evidence.view", "DENIED"),
        ("admin", "evidence.view", "ALLOWED"),
        ("admin", "evidence.download", "ALLOWED"),
    ]
    assert records[0][3].startswith("masked: ") and "case 2026-1130" in records[5][3]


def test_an_operator_plays_seeks_and_downloads_the_masked_clip_in_the_browser(stack: dict) -> None:
    console: ConsoleProcess = stack["console"]
    alert_id, downloads = stack["alert_id"], stack["tmp"] / "downloads"
    downloads.mkdir()
    driver = browser()
    stack["drivers"].append(driver)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    log_in(driver, console.url, "operator2", PASSWORDS["operator2"])
    wait_for(lambda: driver.find_element(By.ID, "console").is_displayed(), 30, "the console after login")
    row = f'#incident-list .incident-row[data-alert="{alert_id}"]'
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, row), 30, "the incident on the wall")
    click(driver, row)
    wait_for(lambda: driver.find_element(By.ID, "detail-clip").is_displayed(), 30, "the clip player")

    def player(prop: str) -> float:
        return float(driver.execute_script(f"return document.getElementById('clip-video').{prop}"))

    wait_for(lambda: player("readyState") >= 2, 60, "the clip's first frames in the player")
    assert player("duration") == pytest.approx(8.0, abs=1.1)  # 3 s pre-roll + 2 s + 3 s post-roll
    driver.execute_script("document.getElementById('clip-video').play()")
    wait_for(lambda: player("currentTime") > 1.0, 30, "playback to advance")
    # Seeking needs Range requests answered with 206: jump near the end and play on from there.
    driver.execute_script("const v = document.getElementById('clip-video'); v.currentTime = 6.0; v.play()")
    wait_for(lambda: player("currentTime") > 6.2 and player("readyState") >= 2, 30, "playback after seeking")
    assert "masked" in driver.find_element(By.ID, "clip-info").text
    assert not driver.find_element(By.ID, "clip-original").is_displayed()  # operators get no original
    driver.execute_script("document.getElementById('detail-clip').scrollIntoView()")
    driver.save_screenshot(str(DOCS / "console-incident-clip.png"))

    driver.find_element(By.ID, "clip-download").click()
    saved = wait_for(lambda: [p for p in downloads.glob("*.mp4") if p.stat().st_size > 0], 60, "the downloaded clip")[0]
    assert saved.name == f"{alert_id}-masked-000.mp4"
    assert saved.read_bytes() == stack["store"].get(stack["masked_key"])

    def operator2s() -> list[tuple[str, str, str]]:
        return [(r["actor"], r["what"], r["outcome"]) for r in stack["audit"].snapshot() if r["actor"] == "operator2"]

    wait_for(lambda: len(operator2s()) >= 2, 30, "operator2's view and download records")
    assert operator2s() == [("operator2", "evidence.view", "ALLOWED"), ("operator2", "evidence.download", "ALLOWED")]


def test_the_clip_of_an_incident_older_than_the_window_is_found_by_its_alert_id_and_audited(stack: dict) -> None:
    console: ConsoleProcess = stack["console"]
    old_id, store = stack["old_id"], stack["store"]
    masked = store.get(store.key(old_id, "masked/segment-000.mp4"))
    assert masked
    video = f"/api/v1/incidents/{old_id}/clip/0.mp4"
    with console.client("operator") as operator, console.client("partner") as partner:
        assert operator.get(f"/api/v1/incidents/{old_id}").status_code == 404  # not in the window
        described = operator.get(f"/api/v1/incidents/{old_id}/clip")
        assert described.status_code == 200, described.text
        assert described.json()["camera_id"] == "cam-m" and described.json()["masked_ready"]
        assert described.json()["segments"][0]["masked_url"] == video
        played = operator.get(video, headers={"Range": "bytes=0-99"})
        assert played.status_code == 206 and played.content == masked[:100]
        given = operator.get(video, params={"download": "1"})
        assert given.status_code == 200 and given.content == masked
        assert given.headers["content-disposition"] == f'attachment; filename="{old_id}-masked-000.mp4"'
        # A user restricted to other cameras gets neither the description nor the video (refusals audited).
        assert partner.get(f"/api/v1/incidents/{old_id}/clip").status_code == 403
        assert partner.get(video).status_code == 403
        assert operator.get("/api/v1/incidents/clip-never-stored/clip").status_code == 404

    records = wait_for(
        lambda: len(stack["old_audit"].snapshot()) >= 4 and stack["old_audit"].snapshot(), 30, "4 audit records"
    )
    assert sorted((r["actor"], r["what"], r["outcome"]) for r in records) == [
        ("operator", "evidence.download", "ALLOWED"),
        ("operator", "evidence.view", "ALLOWED"),
        ("partner", "access_denied", "DENIED"),
        ("partner", "access_denied", "DENIED"),
    ]


def test_an_operator_opens_an_alert_older_than_the_window_by_its_link_and_plays_its_clip(stack: dict) -> None:
    console: ConsoleProcess = stack["console"]
    old_id = stack["old_id"]
    driver = browser()
    stack["drivers"].append(driver)
    log_in(driver, console.url, "operator2", PASSWORDS["operator2"])
    wait_for(lambda: driver.find_element(By.ID, "console").is_displayed(), 30, "the console after login")
    driver.get(f"{console.url}/#alert={old_id}")  # as pasted from an agency's question or the ledger
    wait_for(lambda: driver.find_element(By.ID, "detail-clip").is_displayed(), 30, "the clip player")
    assert driver.find_element(By.ID, "detail-title").text == f"Alert {old_id}"
    assert not driver.find_element(By.ID, "detail-actions").is_displayed()  # no incident to act on here

    def ready() -> float:
        return float(driver.execute_script("return document.getElementById('clip-video').readyState"))

    wait_for(lambda: ready() >= 2, 60, "the old clip's first frames in the player")
    assert "masked" in driver.find_element(By.ID, "clip-info").text
