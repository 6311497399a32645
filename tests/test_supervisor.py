"""`cctv up`'s supervisor: restarts with capped backoff, gives up on a service that keeps dying, and
publishes every lifecycle event as a PlatformEvent record on the real cctv.platform-events.v1 topic."""

from __future__ import annotations

from pathlib import Path

import pytest

from cctv.devstack.events import PlatformEventPublisher, event_line
from cctv.devstack.services import ServiceSpec, StackContext, describe_exit
from cctv.devstack.supervisor import (
    PlatformEvent,
    RestartPolicy,
    Supervisor,
    restart_decision,
)
from libs.kafka import create_topics
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import PLATFORM_EVENTS, pipeline_topics
from tests.kafka_helpers import TopicWatcher, wait_for

SERDE = AvroSerde(shipped_catalog())


def test_backoff_doubles_is_capped_and_gives_up_after_too_many_exits() -> None:
    policy = RestartPolicy(backoff_initial_s=1, backoff_max_s=5, max_restarts=4, window_s=60)
    exits: list[float] = []
    delays = []
    for now in (100.0, 101.0, 103.0, 107.0):
        decision = restart_decision(policy, exits, now)
        assert not decision.give_up
        delays.append(decision.delay_s)
        exits.append(now)
    assert delays == [1, 2, 4, 5]  # doubled, capped at backoff_max_s
    assert restart_decision(policy, exits, 110.0).give_up  # a fifth exit within 60 s
    # Exits older than the window are forgiven: a service that ran for a long time starts over.
    assert restart_decision(policy, exits, 1000.0) == restart_decision(policy, [], 0.0)


def test_exit_descriptions_do_not_call_a_graceful_stop_an_error() -> None:
    assert describe_exit(-15) == "stopped" and describe_exit(0) == "stopped"
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(3) == "exit code 3"


@pytest.fixture
def events(kafka_settings: KafkaSettings):
    create_topics(kafka_settings, pipeline_topics())
    publisher = PlatformEventPublisher(kafka_settings, SERDE)
    seen: list[PlatformEvent] = []

    def report(event: PlatformEvent) -> None:
        seen.append(event)
        publisher.publish(event)

    yield report, seen
    assert publisher.close() == 0


def context(kafka: KafkaSettings, tmp_path: Path) -> StackContext:
    return StackContext(bootstrap=kafka.bootstrap_servers, registry_url=None, state_dir=tmp_path)


def test_a_killed_service_is_restarted_and_the_restart_is_published(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path, events
) -> None:
    report, seen = events
    name = f"ingest-{unique}"
    spec = ServiceSpec(
        name,
        "services.ingest.main",
        0,
        extra_env=lambda _ctx: {"CCTV_GROUP_ID": f"sup-{unique}", "CCTV_LOG__FORMAT": "text"},
    )
    policy = RestartPolicy(backoff_initial_s=0.5, backoff_max_s=2, max_restarts=3, window_s=60)
    with TopicWatcher(kafka_settings, PLATFORM_EVENTS, "PlatformEvent", SERDE, lambda v: v["service"] == name) as topic:
        supervisor = Supervisor([spec], context(kafka_settings, tmp_path), tmp_path, report, policy).start()
        try:
            first = supervisor.process(name).pid
            wait_for(lambda: any(e["event"] == "STARTED" for e in topic.snapshot()), 30, "the STARTED record")
            supervisor.process(name).kill()  # SIGKILL: as if the process crashed
            wait_for(
                lambda: any(e["event"] == "STARTED" and e["restarts"] == 1 for e in topic.snapshot()),
                60,
                "the restart's STARTED record on the topic",
            )
            kinds = [e["event"] for e in topic.snapshot()]
            assert kinds[:4] == ["STARTED", "EXITED", "RESTARTING", "STARTED"], kinds
            exited = topic.snapshot()[1]
            assert exited["exit_code"] == -9 and "killed by SIGKILL" in exited["detail"]
            assert supervisor.process(name).alive and supervisor.process(name).pid != first
            assert supervisor.state(name) == "up (restarts: 1)"
        finally:
            codes = supervisor.stop()
        assert codes[name] == -15  # the restarted process stopped gracefully on SIGTERM
        wait_for(lambda: topic.snapshot()[-1]["event"] == "STOPPED", 30, "the STOPPED record")
        assert topic.snapshot()[-1]["detail"] == "stopped"
    assert "RESTARTING" in event_line(seen[2], markup=False) and name in event_line(seen[2], markup=False)


def test_a_service_that_keeps_dying_is_given_up_on(
    kafka_settings: KafkaSettings, unique: str, tmp_path: Path, events
) -> None:
    report, _seen = events
    name = f"broken-{unique}"
    # A real process that fails at start, as a service with a bad configuration does.
    spec = ServiceSpec(name, "cctv.devstack.no_such_module", 0)
    policy = RestartPolicy(backoff_initial_s=0.1, backoff_max_s=0.2, max_restarts=2, window_s=60)
    with TopicWatcher(kafka_settings, PLATFORM_EVENTS, "PlatformEvent", SERDE, lambda v: v["service"] == name) as topic:
        supervisor = Supervisor(
            [spec], context(kafka_settings, tmp_path), tmp_path, report, policy, poll_interval_s=0.1
        ).start()
        try:
            wait_for(lambda: any(e["event"] == "GAVE_UP" for e in topic.snapshot()), 60, "the GAVE_UP record")
            assert supervisor.state(name) == "GAVE UP"
            kinds = [e["event"] for e in topic.snapshot()]
            assert kinds.count("STARTED") == 3 and kinds.count("RESTARTING") == 2, kinds  # 2 restarts, then no more
            gave_up = next(e for e in topic.snapshot() if e["event"] == "GAVE_UP")
            assert gave_up["exit_code"] == 1 and "not restarting" in gave_up["detail"] and gave_up["restarts"] == 2
            assert "No module named" in (tmp_path / f"{name}.log").read_text()
        finally:
            supervisor.stop()
