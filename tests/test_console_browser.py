"""The console in real headless Chromium (Debian chromium + chromium-driver, driven by selenium) against
the real stack: the sample camera through ingest, frame-sampler, detector and alert-router on the real
broker and registry, and the console as its own process. Screenshots go to docs/ for the README."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from libs.cameras import CameraEntry, GeoPoint
from libs.settings import KafkaSettings
from libs.topics import INCIDENT_ACTIONS
from tests.console_helpers import PASSWORDS, ConsoleProcess, write_users
from tests.kafka_helpers import wait_for
from tests.pipeline_helpers import campus_camera, pipeline_group, service_env, start_pipeline

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def browser() -> WebDriver:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "Debian chromium and chromium-driver are needed: scripts/install-system-deps.sh installs them",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def log_in(driver: WebDriver, url: str, user: str, password: str) -> None:
    driver.get(url)
    wait_for(lambda: driver.find_element(By.ID, "login").is_displayed(), 30, "the login form")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-button").click()


def click(driver: WebDriver, selector: str) -> None:
    """Click what the selector finds, again if the page re-rendered it in between."""

    def attempt() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    wait_for(attempt, 20, f"a click on {selector}")


def tile_state(driver: WebDriver, camera: str) -> dict | None:
    return driver.execute_script(
        """
        const t = document.querySelector(`#wall .tile[data-camera="${arguments[0]}"]`);
        if (!t) return null;
        const img = t.querySelector('img'), canvas = t.querySelector('canvas');
        let drawn = 0;
        if (canvas.width) {
          const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          for (let i = 3; i < px.length; i += 4 * 97) if (px[i]) drawn++;
        }
        return {sequence: img.dataset.sequence || null, width: img.naturalWidth, popped: t.classList.contains('popped'),
                incident: t.dataset.incident, first: document.querySelector('#wall .tile') === t, boxes: drawn};
    """,
        camera,
    )


def start_groups_at_end(kafka: KafkaSettings, groups: dict[str, str]) -> None:
    """Commit each new consumer group's offsets at its topic's current end."""
    from libs.kafka import high_watermark

    for group, topic in groups.items():
        consumer = Consumer(kafka.client_config() | {"group.id": group, "enable.auto.commit": False})
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.commit(
            offsets=[TopicPartition(topic, p, high_watermark(consumer, topic, p)) for p in partitions],
            asynchronous=False,
        )
        consumer.close()


@pytest.fixture(scope="module")
def stack(kafka_broker, schema_registry, tmp_path_factory) -> Iterator[dict]:
    from cctv.inventory import publish
    from libs.kafka import create_topics
    from libs.serde import make_serde
    from libs.settings import RegistrySettings
    from libs.topics import pipeline_topics

    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)
    create_topics(kafka, pipeline_topics())
    unique, tmp = uuid.uuid4().hex[:8], tmp_path_factory.mktemp("console-browser")
    camera, other = f"ui-{unique}", f"ui-other-{unique}"
    serde = make_serde(RegistrySettings(url=schema_registry.url))
    publish(
        kafka,
        serde,
        [
            campus_camera(camera, "Campus road", location=GeoPoint(lat=37.5665, lon=126.9780)),
            CameraEntry(
                camera_id=other,
                name="Depot gate",
                site_id="depot",
                stream_url="file:///nonexistent.mp4",
                location=GeoPoint(lat=37.5690, lon=126.9820),
            ),
        ],
    )
    env = service_env(kafka.bootstrap_servers, schema_registry.url)
    sampler, detector, router = (pipeline_group(s, unique) for s in ("frame-sampler", "detector", "alert-router"))
    console_env = env | {
        "CCTV_USERS_FILE": str(write_users(tmp / "users.yaml", [camera], [camera, other])),
        "CCTV_SESSION_KEY": "browser-test-key-" + "y" * 32,
        "CCTV_LAG_GROUPS": json.dumps({sampler: "cctv.video.packets.v1", detector: "cctv.frames.v1"}),
    }
    console = ConsoleProcess(console_env, tmp / "console.log")
    console.start()
    # A reused broker still holds earlier runs' video (1 h retention): the new groups start at the end,
    # so the pipeline works on this run's camera only, as a running deployment would.
    start_groups_at_end(
        kafka,
        {sampler: "cctv.video.packets.v1", detector: "cctv.frames.v1", router: "cctv.detections.v1"},
    )
    drivers: list[WebDriver] = []
    info = {
        "kafka": kafka,
        "registry": schema_registry.url,
        "camera": camera,
        "other": other,
        "console": console,
        "env": env,
        "unique": unique,
        "tmp": tmp,
        "services": [],
        "drivers": drivers,
    }
    try:
        yield info
    finally:
        for driver in drivers:
            driver.quit()
        codes = {service.name: service.stop() for service in info["services"]}
        publish(kafka, serde, [], [camera, other])
        assert console.stop() == 0, (tmp / "console.log").read_text()[-3000:]
        assert all(code == 0 for code in codes.values()), codes


def test_operator_workflow_in_the_browser(stack: dict) -> None:
    console: ConsoleProcess = stack["console"]
    camera = stack["camera"]
    operator = browser()
    stack["drivers"].append(operator)

    # A wrong password is refused without saying which part was wrong.
    log_in(operator, console.url, "operator", "not-the-password")
    wait_for(lambda: operator.find_element(By.ID, "login-error").text, 20, "the login error")
    assert operator.find_element(By.ID, "login-error").text == "invalid username or password"
    operator.find_element(By.ID, "username").clear()
    log_in(operator, console.url, "operator", PASSWORDS["operator"])
    wait_for(lambda: operator.find_element(By.ID, "console").is_displayed(), 20, "the console after login")
    assert "operator (operator)" in operator.find_element(By.ID, "whoami").text

    # The pipeline starts after the page is open, so the first incident pops in front of the operator.
    stack["services"] += start_pipeline(stack["env"], stack["unique"], stack["tmp"])

    def services_alive() -> None:
        for service in stack["services"]:
            assert service.alive, f"{service.name} died:\n{service.log_text()[-3000:]}"

    def live_tile() -> dict | None:
        services_alive()
        state = tile_state(operator, camera)
        return state if state and state["sequence"] and state["width"] > 0 else None

    first = wait_for(live_tile, 150, "the sample camera's tile with a frame")
    changed = wait_for(
        lambda: (s := live_tile()) and s["sequence"] != first["sequence"] and s, 30, "the tile's frame to change"
    )
    assert int(changed["sequence"]) > int(first["sequence"])

    try:
        popped = wait_for(
            lambda: (s := live_tile()) and s["incident"] and s["popped"] and s, 240, "an alert to pop the camera's tile"
        )
    except AssertionError as error:
        logs = "\n".join(f"--- {s.name}\n{s.log_text()[-1500:]}" for s in stack["services"])
        raise AssertionError(f"{error}\n{logs}") from None
    assert popped["first"], "the camera with the new incident is the first tile"
    wait_for(lambda: (s := live_tile()) and s["boxes"] > 0, 60, "detection boxes drawn over the frame")
    row = wait_for(
        lambda: operator.find_elements(
            By.CSS_SELECTOR, f'#incident-list .incident-row[data-alert="{popped["incident"]}"]'
        ),
        20,
        "the incident in the list",
    )[0]
    assert "Campus road" in row.text and "new" in row.text
    wait_for(lambda: "all screens p50" in operator.find_element(By.ID, "latency").text, 30, "the latency footer")
    operator.save_screenshot(str(DOCS / "console-wall.png"))

    # Open the incident, acknowledge with the button, close with the keyboard.
    alert_id = popped["incident"]
    click(operator, f'#incident-list .incident-row[data-alert="{alert_id}"]')
    wait_for(lambda: operator.find_element(By.ID, "detail").is_displayed(), 20, "the incident dialog")
    wait_for(
        lambda: operator.execute_script("return document.getElementById('detail-image').naturalWidth") > 0,
        20,
        "the evidence snapshot",
    )
    operator.find_element(By.CSS_SELECTOR, '#detail-actions button[data-action="acknowledge"]').click()
    wait_for(lambda: operator.find_element(By.ID, "detail-status").text == "acknowledged", 20, "acknowledged")
    operator.find_element(By.ID, "comment").send_keys("patrol 7 sent")
    operator.find_element(By.CSS_SELECTOR, '#detail-actions button[data-action="comment"]').click()
    wait_for(lambda: "patrol 7 sent" in operator.find_element(By.ID, "detail-history").text, 20, "the comment")
    operator.save_screenshot(str(DOCS / "console-incident.png"))
    operator.find_element(By.TAG_NAME, "body").send_keys("c")
    wait_for(lambda: operator.find_element(By.ID, "detail-status").text == "closed", 20, "closed by the 'c' key")

    # Another user in another browser sees the new state.
    second = browser()
    stack["drivers"].append(second)
    log_in(second, console.url, "operator2", PASSWORDS["operator2"])
    wait_for(lambda: second.find_element(By.ID, "console").is_displayed(), 20, "the second console")
    second.find_element(By.CSS_SELECTOR, '.tab[data-view="incidents"]').click()
    Select(second.find_element(By.ID, "incident-filter")).select_by_visible_text("closed")
    wait_for(
        lambda: any(
            "closed" in row.text and "Campus road" in row.text
            for row in second.find_elements(By.CSS_SELECTOR, "#incident-table tbody tr")
        ),
        30,
        "the closed incident in the second session",
    )

    # The actions are Avro records on cctv.incident-actions.v1, readable by any plain consumer.
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": stack["registry"]}))
    reader = Consumer(
        {
            "bootstrap.servers": stack["kafka"].bootstrap_servers,
            "group.id": f"ui-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    partitions = reader.list_topics(INCIDENT_ACTIONS, timeout=10).topics[INCIDENT_ACTIONS].partitions
    reader.assign([TopicPartition(INCIDENT_ACTIONS, p, 0) for p in partitions])
    actions: list[dict] = []
    deadline = time.monotonic() + 30
    while len(actions) < 3 and time.monotonic() < deadline:
        message = reader.poll(0.5)
        if message is not None and not message.error() and message.key() == alert_id.encode():
            actions.append(deserialize(message.value(), SerializationContext(INCIDENT_ACTIONS, MessageField.VALUE)))
    reader.close()
    assert [a["action"] for a in actions] == ["ACKNOWLEDGE", "COMMENT", "CLOSE"]
    assert {a["operator"] for a in actions} == {"operator"} and actions[1]["comment"] == "patrol 7 sent"

    latencies = operator.execute_script("return window.cctvConsole.latency")
    print(
        f"\ncapture->pixels on the wall: p50 {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms "
        f"over {len(latencies)} frames"
    )
    assert statistics.median(latencies) < 5000


def test_viewer_and_restricted_user_in_the_browser(stack: dict) -> None:
    console: ConsoleProcess = stack["console"]
    viewer = browser()
    stack["drivers"].append(viewer)
    log_in(viewer, console.url, "viewer", PASSWORDS["viewer"])
    wait_for(lambda: viewer.find_element(By.ID, "console").is_displayed(), 20, "the viewer's console")
    row = wait_for(
        lambda: (
            viewer.find_elements(By.CSS_SELECTOR, "#incident-list .incident-row")
            or viewer.find_elements(By.CSS_SELECTOR, "#wall .tile")
        ),
        60,
        "something on the viewer's wall",
    )
    del row
    incidents = httpx.get(
        f"{console.url}/api/v1/incidents?state=all",
        timeout=30,
        headers={
            "Authorization": "Bearer "
            + httpx.post(
                f"{console.url}/api/v1/login", json={"username": "admin", "password": PASSWORDS["admin"]}
            ).json()["token"]
        },
    ).json()["incidents"]
    alert_id = incidents[0]["alert_id"]
    # The page hides the buttons; the API refuses the viewer's own session anyway (page's fetch + CSRF).
    status = viewer.execute_script(
        """
        const me = await (await fetch('/api/v1/me')).json();
        const r = await fetch(`/api/v1/incidents/${arguments[0]}/actions`, {method: 'POST',
          headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token}, body: '{"action": "reopen"}'});
        return r.status;""",
        alert_id,
    )
    assert status == 403

    # The map: cameras at their locations (offline SVG), radius search from typed coordinates.
    viewer.find_element(By.CSS_SELECTOR, '.tab[data-view="map"]').click()
    dots = wait_for(
        lambda: viewer.find_elements(By.CSS_SELECTOR, f'#map circle.cam[data-camera="{stack["camera"]}"]'),
        20,
        "the sample camera on the map",
    )
    assert "conn-ONLINE" in dots[0].get_attribute("class")
    viewer.find_element(By.ID, "near-lat").send_keys("37.5666")
    viewer.find_element(By.ID, "near-lon").send_keys("126.9781")
    viewer.find_element(By.ID, "near-go").click()
    near = wait_for(lambda: viewer.find_element(By.ID, "near-list").text, 20, "the radius search result")
    assert "Campus road" in near and "Depot gate" not in near, near
    wait_for(lambda: viewer.find_elements(By.CSS_SELECTOR, "#map circle.search"), 20, "the search circle on the map")
    viewer.save_screenshot(str(DOCS / "console-map.png"))
    # Health: the camera whose file does not exist is reported with its reason.
    viewer.find_element(By.CSS_SELECTOR, '.tab[data-view="health"]').click()
    wait_for(
        lambda: (
            stack["other"] in viewer.find_element(By.ID, "problem-table").text
            or viewer.find_element(By.CSS_SELECTOR, '.tab[data-view="health"]').click()
        ),
        60,
        "the broken camera on the health view",
    )

    partner = browser()
    stack["drivers"].append(partner)
    log_in(partner, console.url, "partner", PASSWORDS["partner"])
    wait_for(lambda: partner.find_element(By.ID, "console").is_displayed(), 20, "the partner's console")
    partner.get(f"{console.url}/api/v1/cameras/{stack['other']}")
    assert "you may not view camera" in partner.find_element(By.TAG_NAME, "body").text
    partner.get(f"{console.url}/api/v1/cameras/{stack['camera']}")
    assert stack["camera"] in partner.find_element(By.TAG_NAME, "body").text

    with httpx.Client(base_url=console.url, timeout=30) as admin:
        token = admin.post("/api/v1/login", json={"username": "admin", "password": PASSWORDS["admin"]}).json()["token"]
        admin.headers["Authorization"] = f"Bearer {token}"
        admin.cookies.clear()

        def denied() -> list[dict]:
            records = admin.get("/api/v1/audit", params={"limit": 2000}).json()["records"]
            return [r for r in records if r["what"] == "access_denied" and r["actor"] in ("viewer", "partner")]

        found = wait_for(
            lambda: {r["actor"] for r in denied()} == {"viewer", "partner"} and denied(),
            30,
            "both denials on the audit ledger",
        )
        assert any(r["camera_id"] == stack["other"] for r in found if r["actor"] == "partner")
