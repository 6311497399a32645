"""The whole pipeline on a broker secured as in production: SASL_SSL (SCRAM-SHA-512 over TLS from the
project's CA), StandardAuthorizer, one principal per service and per agency with only the ACLs that
`cctv acls apply` grants. An agency reads its own alerts and is refused everything else; no password
reaches a log."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from cctv.acls import plan, principals
from cctv.devstack.secure_kafka import SecuredKafkaBroker
from cctv.devstack.services import PIPELINE_SERVICES
from cctv.inventory import publish
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import FRAMES, pipeline_topics
from tests.pipeline_helpers import campus_camera, pipeline_group, service_env, start_pipeline

REPO = Path(__file__).resolve().parents[1]
SECURED_PORT = int(os.environ.get("CCTV_TEST_SECURED_KAFKA_PORT", "19392"))
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
    secured_broker: SecuredKafkaBroker, passwords: dict[str, str], schema_registry, unique: str, tmp_path: Path
) -> None:
    broker = secured_broker
    operator = KafkaSettings(
        bootstrap_servers=broker.bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="cctv-operator",
        sasl_password=passwords["cctv-operator"],
        ssl_ca_location=str(broker.tls.ca_file),
    )
    camera = f"secure-{unique}"
    serde = AvroSerde(shipped_catalog())
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
        service_env(None, schema_registry.url),  # the broker and credentials: each service's own principal
        unique,
        tmp_path,
        lambda name: broker.service_env(SERVICE_PRINCIPALS[name], passwords[SERVICE_PRINCIPALS[name]]),
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

    # Credentials never in the logs: services' and the broker's.
    broker_log = broker.log_file.read_text(errors="replace")
    for name, text in logs.items() | {("broker", broker_log)}:
        for secret in [*passwords.values(), broker.admin_password]:
            assert secret not in text, f"a password appears in the {name} log"
