"""The whole pipeline on a broker and a schema registry secured as in production: SASL_SSL (SCRAM-SHA-512
over TLS from the project's CA), StandardAuthorizer, one principal per service and per agency with only
the ACLs that `cctv acls apply` grants; the registry behind TLS (same CA) and basic auth, where only the
schema writer (`cctv topics create`) registers and everyone else only reads. An agency reads its own
alerts and is refused everything else; no password reaches a log."""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from cctv.acls import plan, principals
from cctv.devstack.secure_kafka import SecuredKafkaBroker
from cctv.devstack.secure_registry import SCHEMA_WRITER, SecuredSchemaRegistry, TlsSchemaRegistry
from cctv.devstack.services import PIPELINE_SERVICES
from cctv.inventory import publish
from libs.kafka import create_topics
from libs.serde import make_serde, registry_client
from libs.settings import KafkaSettings, RegistrySettings
from libs.topics import FRAMES, pipeline_topics
from tests.pipeline_helpers import campus_camera, pipeline_group, service_env, start_pipeline

REPO = Path(__file__).resolve().parents[1]
SECURED_PORT = int(os.environ.get("CCTV_TEST_SECURED_KAFKA_PORT", "19392"))
SECURED_REGISTRY_PORT = int(os.environ.get("CCTV_TEST_SECURED_REGISTRY_PORT", str(SECURED_PORT - 11)))
SERVICE_PRINCIPALS = {
    "ingest": "cctv-ingest",
    "frame-sampler": "cctv-frame-sampler",
    "detector": "cctv-detector",
    "alert-router": "cctv-alert-router",
}


@pytest.fixture(scope="module")
def secured_broker() -> Iterator[SecuredKafkaBroker]:
    broker = SecuredKafkaBroker(port=SECURED_PORT)
    outcome = broker.start(timeout_s=180)
    yield broker
    if outcome == "started" and not os.environ.get("CCTV_TEST_KEEP_KAFKA"):
        broker.stop()


@pytest.fixture(scope="module")
def passwords(secured_broker: SecuredKafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Topics created by the administrator, then users and ACLs through `cctv acls apply`."""
    admin = KafkaSettings(
        bootstrap_servers=secured_broker.bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="admin",
        sasl_password=secured_broker.admin_password,
        ssl_ca_location=str(secured_broker.tls.ca_file),
    )
    specs = pipeline_topics()
    create_topics(admin, specs)
    directory = tmp_path_factory.mktemp("kafka-users")
    chosen = {user: secrets.token_urlsafe(18) for user in principals(plan([s.name for s in specs]))}
    for user, password in chosen.items():
        (directory / user).write_text(password)
    env = os.environ | secured_broker.service_env("admin", secured_broker.admin_password)
    result = subprocess.run(
        [sys.executable, "-m", "cctv.cli", "acls", "apply", "--passwords-dir", str(directory)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ACL bindings applied" in result.stdout
    assert not any(password in result.stdout + result.stderr for password in chosen.values())
    return chosen


@pytest.fixture(scope="module")
def secured_registry(
    secured_broker: SecuredKafkaBroker,
    passwords: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SecuredSchemaRegistry, dict[str, str]]]:
    """The registry behind TLS and basic auth: every Kafka principal may read schemas, only the schema
    writer may register; the writer then registers every topic's schema through `cctv topics create`."""
    users = passwords | {SCHEMA_WRITER: secrets.token_urlsafe(18)}
    directory = tmp_path_factory.mktemp("registry-users")
    for user, password in users.items():
        (directory / user).write_text(password)
    upstream = TlsSchemaRegistry(port=SECURED_REGISTRY_PORT + 1, tls=secured_broker.tls)
    outcome = upstream.start(timeout_s=240)
    registry = SecuredSchemaRegistry(
        port=SECURED_REGISTRY_PORT, upstream=upstream, tls=secured_broker.tls, passwords_dir=directory
    )
    registry.stop()  # a proxy kept from an earlier run knows other passwords
    registry.start(timeout_s=60)
    env = (
        os.environ
        | secured_broker.service_env("admin", secured_broker.admin_password)
        | registry.client_env(SCHEMA_WRITER, users[SCHEMA_WRITER])
    )
    result = subprocess.run(
        [sys.executable, "-m", "cctv.cli", "topics", "create"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    frames_row = next(line for line in result.stdout.splitlines() if line.startswith(FRAMES + "\t"))
    assert frames_row.split("\t")[3].isdigit(), frames_row  # the schema id it registered
    assert not any(password in result.stdout + result.stderr for password in users.values())
    yield registry, users
    registry.stop()
    if outcome == "started" and not os.environ.get("CCTV_TEST_KEEP_KAFKA"):
        upstream.stop()


def _client(broker: SecuredKafkaBroker, user: str, password: str) -> dict[str, str]:
    return broker.client_config(user, password) | {"log_level": "3"}


def _refused(config: dict[str, str], topic: str, timeout_s: float = 30.0) -> KafkaError:
    """Subscribe to `topic` from its start as the given principal; returns the broker's error (fails if a
    record is ever delivered)."""
    consumer = Consumer(config | {"auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is not None, f"read a record of {topic}: access was not denied"
            return message.error()
    finally:
        consumer.close()
    raise AssertionError(f"no answer from the broker for {topic} within {timeout_s} s")


def test_pipeline_runs_on_secured_broker_with_least_privilege(
    secured_broker: SecuredKafkaBroker,
    passwords: dict[str, str],
    secured_registry: tuple[SecuredSchemaRegistry, dict[str, str]],
    unique: str,
    tmp_path: Path,
) -> None:
    broker = secured_broker
    registry, registry_users = secured_registry
    operator = KafkaSettings(
        bootstrap_servers=broker.bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="cctv-operator",
        sasl_password=passwords["cctv-operator"],
        ssl_ca_location=str(broker.tls.ca_file),
    )
    camera = f"secure-{unique}"
    # The operator reads schemas (lookup) but registers none: the writer did that.
    serde = make_serde(
        RegistrySettings(
            url=registry.url,
            username="cctv-operator",
            password=passwords["cctv-operator"],
            ssl_ca_location=str(broker.tls.ca_file),
            auto_register=False,
        )
    )
    publish(
        operator,
        serde,
        [campus_camera(camera, "Secured campus road")],
    )

    police_topic = "cctv.alerts.police.v1"
    police = Consumer(
        _client(broker, "agency-police", passwords["agency-police"])
        | {"group.id": f"agency-police-{unique}", "enable.auto.commit": False}
    )
    assignment = []
    for partition in police.list_topics(police_topic, timeout=10).topics[police_topic].partitions:
        high = police.get_watermark_offsets(TopicPartition(police_topic, partition), timeout=10)[1]
        assignment.append(TopicPartition(police_topic, partition, high))
    police.assign(assignment)

    services = start_pipeline(
        service_env(None),  # the broker, the registry and credentials: each service's own principal
        unique,
        tmp_path,
        lambda name: (
            broker.service_env(SERVICE_PRINCIPALS[name], passwords[SERVICE_PRINCIPALS[name]])
            | registry.client_env(SERVICE_PRINCIPALS[name], passwords[SERVICE_PRINCIPALS[name]])
        ),
    )
    alert = None
    try:
        deadline = time.monotonic() + 180
        while alert is None and time.monotonic() < deadline:
            message = police.poll(0.5)
            if message is None or message.error():
                for service in services:
                    assert service.alive, f"{service.name} died:\n{service.log_text()[-3000:]}"
                continue
            if message.key() and camera.encode() in message.value():
                alert = message
    finally:
        codes = {service.name: service.stop() for service in services}
    logs = {service.name: service.log_text() for service in services}
    assert alert is not None, "no police alert within 180 s; logs:\n" + "\n".join(t[-2000:] for t in logs.values())
    assert codes == dict.fromkeys(PIPELINE_SERVICES, 0), codes

    # The agency is refused another agency's alerts and the raw pipeline (frames of every camera).
    police.close()
    agency = _client(broker, "agency-police", passwords["agency-police"]) | {"group.id": f"agency-police-{unique}"}
    for forbidden in ("cctv.alerts.fire.v1", FRAMES):
        error = _refused(agency, forbidden)
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (forbidden, error)
    # Nor can it forge alerts on its own topic (read-only), or a detector read raw video.
    forger = Producer(_client(broker, "agency-police", passwords["agency-police"]) | {"message.timeout.ms": 15000})
    outcomes: list[KafkaError | None] = []
    forger.produce(police_topic, key=b"forged", value=b"x", on_delivery=lambda err, _m: outcomes.append(err))
    forger.flush(30)
    assert outcomes and outcomes[0] is not None and outcomes[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    detector = _client(broker, "cctv-detector", passwords["cctv-detector"]) | {
        "group.id": pipeline_group("detector", unique)
    }
    assert _refused(detector, "cctv.video.packets.v1").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # A wrong password is an authentication failure, not an anonymous session.
    intruder = Consumer(_client(broker, "agency-police", "not-the-password") | {"group.id": "intruder"})
    with pytest.raises(KafkaException) as refused:
        intruder.list_topics(police_topic, timeout=15)
    intruder.close()
    assert refused.value.args[0].code() in (KafkaError._AUTHENTICATION, KafkaError._TRANSPORT, KafkaError._TIMED_OUT), (
        refused.value
    )

    # Credentials never in the logs: services', the broker's and the registry proxy's.
    broker_log = broker.log_file.read_text(errors="replace")
    proxy_logs = registry.log_file.read_text(errors="replace") + (registry.home / "access.log").read_text()
    # Services only looked schemas up (they reached the registry as themselves, and registered nothing).
    service_requests = [line for line in proxy_logs.splitlines() if f" - {SERVICE_PRINCIPALS['detector']} [" in line]
    assert service_requests, "the detector never reached the registry through the proxy"
    for principal in SERVICE_PRINCIPALS.values():
        for line in proxy_logs.splitlines():
            assert not (f" - {principal} [" in line and "/versions HTTP" in line and '"POST ' in line), line
    for name, text in logs.items() | {("broker", broker_log), ("registry proxy", proxy_logs)}:
        for secret in [*registry_users.values(), broker.admin_password]:  # every Kafka password, and the writer's
            assert secret not in text, f"a password appears in the {name} log"


def _schema_body(definition: str) -> dict[str, str]:
    return {"schema": definition, "schemaType": "AVRO"}


def test_secured_registry_refuses_plain_http_bad_credentials_and_reader_writes(
    secured_registry: tuple[SecuredSchemaRegistry, dict[str, str]], unique: str
) -> None:
    registry, users = secured_registry
    ca = ssl.create_default_context(cafile=str(registry.tls.ca_file))  # trusts the project CA only
    frames = f"{registry.url}/subjects/{FRAMES}-value/versions/latest"
    police = ("agency-police", users["agency-police"])
    writer = (SCHEMA_WRITER, users[SCHEMA_WRITER])

    # TLS only: plain HTTP on the registry's port is refused, and the certificate is the project CA's.
    plain = httpx.get(frames.replace("https://", "http://"), auth=police, timeout=10)
    assert plain.status_code == 400 and "Frame" not in plain.text, plain.text
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(frames, auth=police, timeout=10)  # the system trust store does not know the dev CA

    # No credentials, a wrong password, an unknown user: 401, no schema.
    for auth in (None, ("agency-police", "not-the-password"), ("nobody", users["agency-police"])):
        refused = httpx.get(frames, auth=auth, verify=ca, timeout=10)
        assert refused.status_code == 401 and "Frame" not in refused.text, (auth and auth[0], refused.status_code)

    # The agency reads schemas: by subject, by id, and a lookup (a POST that changes nothing).
    latest = httpx.get(frames, auth=police, verify=ca, timeout=10)
    assert latest.status_code == 200, latest.text
    frame_schema, frame_id = latest.json()["schema"], latest.json()["id"]
    by_id = httpx.get(f"{registry.url}/schemas/ids/{frame_id}", auth=police, verify=ca, timeout=10)
    assert by_id.status_code == 200 and json.loads(by_id.json()["schema"])["name"] == "Frame"
    lookup = httpx.post(
        f"{registry.url}/subjects/{FRAMES}-value", json=_schema_body(frame_schema), auth=police, verify=ca, timeout=10
    )
    assert lookup.status_code == 200 and lookup.json()["id"] == frame_id, lookup.text

    # ...but cannot register, change or delete one; the writer can register.
    subject = f"regtls-{unique}-value"
    probe = json.dumps({"type": "record", "name": "Probe", "fields": [{"name": "n", "type": "int"}]})
    for method, path in (
        ("POST", f"/subjects/{subject}/versions"),
        ("PUT", f"/config/{subject}"),
        ("DELETE", f"/subjects/{FRAMES}-value"),
    ):
        denied = httpx.request(
            method, registry.url + path, json=_schema_body(probe), auth=police, verify=ca, timeout=10
        )
        assert denied.status_code == 401, (method, path, denied.status_code, denied.text)
    # Paths nginx and Apicurio might normalise differently are refused before any role decision (sent
    # with http.client: httpx would resolve the dot segments itself).
    prefix = registry.url.split(str(registry.port), 1)[1]
    for disguised in ("/versions/..", "/versions/%2E%2E", "%2Fversions", ";/versions"):
        connection = http.client.HTTPSConnection("127.0.0.1", registry.port, context=ca, timeout=10)
        token = base64.b64encode(f"{police[0]}:{police[1]}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        connection.request("POST", f"{prefix}/subjects/{subject}{disguised}", json.dumps(_schema_body(probe)), headers)
        status = connection.getresponse().status
        connection.close()
        assert status == 400, (disguised, status)
    assert httpx.get(frames, auth=police, verify=ca, timeout=10).json()["id"] == frame_id  # not deleted
    assert (
        httpx.get(f"{registry.url}/subjects/{subject}/versions", auth=writer, verify=ca, timeout=10).status_code == 404
    )
    client = registry_client(
        RegistrySettings(
            url=registry.url, username=police[0], password=police[1], ssl_ca_location=str(registry.tls.ca_file)
        )
    )
    assert client is not None and "Frame" in client.get_schema(frame_id).schema_str
    with pytest.raises(SchemaRegistryError) as rejected:
        client.register_schema(subject, Schema(probe, "AVRO"))
    assert rejected.value.http_status_code == 401
    written = httpx.post(
        f"{registry.url}/subjects/{subject}/versions", json=_schema_body(probe), auth=writer, verify=ca, timeout=10
    )
    assert written.status_code == 200 and isinstance(written.json()["id"], int), written.text

    # The registry itself speaks only TLS (no plain listener), with the project CA's certificate.
    upstream = registry.upstream
    assert (
        httpx.get(f"{upstream.url}/subjects/{FRAMES}-value/versions/latest", verify=ca, timeout=10).status_code == 200
    )
    with pytest.raises(httpx.HTTPError):
        httpx.get(upstream.url.replace("https://", "http://") + "/subjects", timeout=10)

    # Passwords never reach the proxy's logs, nor the registry's.
    logs = registry.log_file.read_text(errors="replace") + (registry.home / "access.log").read_text()
    logs += registry.upstream.log_file.read_text(errors="replace")
    assert "agency-police" in logs  # the refusals above are logged, by user name
    for password in users.values():
        assert password not in logs
