"""The Share dialog, the Shares view and the ledger filters in real headless Chromium against a real
console process on the real broker and registry. The screenshot of the dialog goes to docs/."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from cctv.inventory import publish
from libs.cameras import CameraEntry, GeoPoint
from libs.kafka import create_topics, make_producer
from libs.serde import make_serde
from libs.settings import KafkaSettings, RegistrySettings
from libs.topics import ALERTS, SHARES, pipeline_topics
from tests.console_helpers import PASSWORDS, ConsoleProcess, write_users
from tests.kafka_helpers import TopicWatcher, alert_record, wait_for
from tests.test_console_browser import browser, click, log_in

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def stack(kafka_broker, schema_registry, tmp_path_factory) -> Iterator[dict]:
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)
    create_topics(kafka, pipeline_topics())
    tmp = tmp_path_factory.mktemp("shares-browser")
    serde = make_serde(RegistrySettings(url=schema_registry.url))
    suffix = uuid.uuid4().hex[:6]
    gate, street, far = f"gate-{suffix}", f"street-{suffix}", f"far-{suffix}"
    entries = [
        CameraEntry(
            camera_id=gate, name="Main gate", stream_url="file:///dev/null", location=GeoPoint(lat=37.5, lon=127.0)
        ),
        CameraEntry(
            camera_id=street,
            name="Gate street",
            stream_url="file:///dev/null",
            location=GeoPoint(lat=37.5009, lon=127.0),
        ),
        CameraEntry(
            camera_id=far, name="Far away", stream_url="file:///dev/null", location=GeoPoint(lat=37.6, lon=127.1)
        ),
    ]
    publish(kafka, serde, entries)
    alert_id = f"share-ui-{suffix}"
    producer = make_producer(kafka, "share-ui-test")
    record = alert_record(
        alert_id, gate, started_us=time.time_ns() // 1000, camera_name="Main gate", description=f"intrusion {suffix}"
    )
    producer.produce(ALERTS, key=alert_id.encode(), value=serde.serialize(ALERTS, "Alert", record))
    assert producer.flush(30) == 0
    routes = tmp / "routes.yaml"
    routes.write_text(
        yaml.safe_dump(
            {
                "routes": [{"name": "r", "rule_types": ["intrusion"], "destinations": ["police", "fire"]}],
                "endpoints": {"police": {"unmasked": True}},
            }  # fmt: skip
        )
    )
    env = {
        "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CCTV_REGISTRY__URL": schema_registry.url,
        "CCTV_USERS_FILE": str(write_users(tmp / "users.yaml", [], operator_cameras=[gate, street, far])),
        "CCTV_SESSION_KEY": "test-session-key-" + "y" * 32,
        "CCTV_SHARES__KEY": "test-share-key-" + "z" * 40,
        "CCTV_SHARES__GATEWAY_URL": "http://127.0.0.1:18090",
        "CCTV_SHARES__ROUTES_FILE": str(routes),
        "CCTV_LOG__FORMAT": "text",
    }
    console = ConsoleProcess(env, tmp / "console.log").start()
    try:
        yield {"console": console, "kafka": kafka, "serde": serde, "gate": gate, "street": street, "far": far,
               "alert_id": alert_id, "description": f"intrusion {suffix}"}  # fmt: skip
    finally:
        console.stop()
        publish(kafka, serde, [], [gate, street, far])


def open_incident(driver, description: str) -> None:  # type: ignore[no-untyped-def]
    def row():  # type: ignore[no-untyped-def]
        rows = driver.find_elements(By.CSS_SELECTOR, "#incident-table tbody tr")
        return next((r for r in rows if description in r.text), None)

    wait_for(row, 30, "the incident listed").click()


def test_a_supervisor_shares_the_cameras_near_an_incident_and_revokes_from_the_shares_view(stack: dict) -> None:
    console: ConsoleProcess = stack["console"]
    driver = browser()
    try:
        with TopicWatcher(stack["kafka"], SHARES, "ShareRecord", stack["serde"]) as shares:
            log_in(driver, console.url, "admin", PASSWORDS["admin"])
            wait_for(lambda: driver.find_element(By.ID, "console").is_displayed(), 30, "the console")
            click(driver, 'button[data-view="incidents"]')
            open_incident(driver, stack["description"])
            wait_for(lambda: driver.find_element(By.ID, "share-open").is_displayed(), 30, "the Share button")
            click(driver, "#share-open")
            wait_for(
                lambda: len(driver.find_elements(By.CSS_SELECTOR, "#share-cameras input")) == 2, 30, "nearby cameras"
            )
            listed = driver.find_element(By.ID, "share-cameras").text
            assert (
                "Main gate" in listed and "Gate street" in listed and "Far away" not in listed
            )  # 100 m apart vs 14 km
            Select(driver.find_element(By.ID, "share-agency")).select_by_value("fire")
            assert not driver.find_element(By.ID, "share-unmasked").is_enabled()  # fire: masked only
            Select(driver.find_element(By.ID, "share-lifetime")).select_by_visible_text("1 h")
            driver.find_element(By.ID, "share-purpose").send_keys("119 report: smoke seen at the main gate")
            driver.save_screenshot(str(DOCS / "console-share.png"))
            click(driver, "#share-submit")
            wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#share-links li")) == 2, 30, "two links")
            assert "masked" in driver.find_element(By.ID, "share-links").text
            records = wait_for(lambda: len(shares.snapshot()) >= 2 and shares.snapshot(), 30, "shares on the topic")
            assert {r["camera_id"] for r in records} == {stack["gate"], stack["street"]}
            assert {(r["agency"], r["masked"], r["alert_id"]) for r in records} == {("fire", True, stack["alert_id"])}
            assert {r["expires_at"] - r["created_at"] for r in records} == {3600_000}

            driver.find_element(By.ID, "share-close").click()
            driver.find_element(By.ID, "detail-close").click()
            click(driver, 'button[data-view="shares"]')
            wait_for(lambda: stack["street"] in driver.find_element(By.ID, "share-table").text, 30, "the Shares view")
            row = next(
                r for r in driver.find_elements(By.CSS_SELECTOR, "#share-table tbody tr") if stack["street"] in r.text
            )
            row.find_element(By.CSS_SELECTOR, "button.danger").click()
            driver.switch_to.alert.accept()
            wait_for(lambda: stack["street"] not in driver.find_element(By.ID, "share-table").text, 30, "the row gone")
            wait_for(
                lambda: any(r["state"] == "REVOKED" and r["camera_id"] == stack["street"] for r in shares.snapshot()),
                30,
                "the revocation on the topic",
            )

        # The ledger: filter on shares of that camera; the CSV link carries the same filters.
        click(driver, 'button[data-view="audit"]')
        driver.find_element(By.ID, "ledger-camera").send_keys(stack["street"])
        Select(driver.find_element(By.ID, "ledger-what")).select_by_value("share")
        click(driver, '#ledger-form button[type="submit"]')

        def filtered_rows() -> list[str]:
            # The unfiltered audit view is on screen until the filtered answer replaces it: wait for rows that
            # are all of the chosen camera (read in one script call, so a re-render cannot go stale midway).
            rows = driver.execute_script(
                "return [...document.querySelectorAll('#audit-table tbody tr')].map((r) => r.innerText)"
            )
            return rows if rows and all(stack["street"] in r for r in rows) else []

        table = "\n".join(wait_for(filtered_rows, 30, "the ledger rows of the chosen camera"))
        assert "share.created" in table and "share.revoked" in table and stack["gate"] not in table
        href = driver.find_element(By.ID, "ledger-csv").get_attribute("href")
        assert href and "format=csv" in href and f"camera_id={stack['street']}" in href
        token = httpx.post(
            f"{console.url}/api/v1/login", json={"username": "admin", "password": PASSWORDS["admin"]}, timeout=30
        ).json()["token"]
        csv_text = httpx.get(href, headers={"Authorization": f"Bearer {token}"}, timeout=30).text
        assert csv_text.startswith("time,actor,role,what") and "share.revoked" in csv_text
    finally:
        driver.quit()


def test_an_operator_sees_no_share_button_nor_shares_view(stack: dict) -> None:
    console: ConsoleProcess = stack["console"]
    driver = browser()
    try:
        log_in(driver, console.url, "operator", PASSWORDS["operator"])
        wait_for(lambda: driver.find_element(By.ID, "console").is_displayed(), 30, "the console")
        click(driver, 'button[data-view="incidents"]')
        open_incident(driver, stack["description"])
        wait_for(lambda: driver.find_element(By.ID, "detail").is_displayed(), 30, "the incident detail")
        assert not driver.find_element(By.ID, "share-open").is_displayed()
        assert not driver.find_element(By.CSS_SELECTOR, 'button[data-view="shares"]').is_displayed()
    finally:
        driver.quit()
