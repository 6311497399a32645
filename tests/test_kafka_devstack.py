"""`cctv kafka start|stop|status` on a broker of its own (other tests share the session broker)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

from typer.testing import CliRunner

from cctv.cli import app
from cctv.devstack.kafka import KafkaBroker, _random_cluster_id, jars_dir
from cctv.devstack.process import pid_alive, port_open, read_pid

PORT = int(os.environ.get("CCTV_TEST_KAFKA_LIFECYCLE_PORT", "19192"))


def test_start_twice_is_harmless_and_stop_leaves_nothing(kafka_broker: KafkaBroker) -> None:
    # The session broker already fetched the jars: this start must be offline.
    assert any(jars_dir().glob("kafka_2.13-*.jar"))
    runner = CliRunner()
    first = runner.invoke(app, ["kafka", "start", "--port", str(PORT)])
    assert first.exit_code == 0, first.output
    assert "started" in first.output
    broker = KafkaBroker(port=PORT)
    pid = read_pid(broker.pid_file)
    assert pid is not None and broker.answers_metadata()

    second = runner.invoke(app, ["kafka", "start", "--port", str(PORT)])
    assert second.exit_code == 0 and "already running" in second.output
    assert read_pid(broker.pid_file) == pid  # no second JVM

    status = runner.invoke(app, ["kafka", "status", "--port", str(PORT)])
    assert status.exit_code == 0 and f"pid {pid}" in status.output

    stopped = runner.invoke(app, ["kafka", "stop", "--port", str(PORT)])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    assert not pid_alive(pid)
    assert not port_open("127.0.0.1", PORT)
    assert not broker.pid_file.exists()
    java = subprocess.run(["pgrep", "-f", f"node-{PORT}/server.properties"], capture_output=True, text=True)
    assert java.stdout.strip() == ""

    after = runner.invoke(app, ["kafka", "status", "--port", str(PORT)])
    assert after.exit_code == 1 and "stopped" in after.output


def test_topics_create_is_idempotent_and_check_passes(kafka_broker: KafkaBroker) -> None:
    env = os.environ | {"CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "COLUMNS": "200"}
    for _ in range(2):
        created = subprocess.run(
            [sys.executable, "-m", "cctv.cli", "topics", "create"], env=env, capture_output=True, text=True, timeout=120
        )
        assert created.returncode == 0, created.stderr
        assert "cctv.video.packets.v1" in created.stdout and "cctv.alerts.police.v1" in created.stdout
    checked = subprocess.run(
        [sys.executable, "-m", "cctv.cli", "topics", "check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "cctv.cli", "topics", "check", "-d", "coast-guard"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and "cctv.alerts.coast-guard.v1" in missing.stderr


def test_cluster_ids_never_look_like_an_option_to_the_storage_tool() -> None:
    # One base64 id in 64 starts with '-', which `kafka-storage format -t` took for a flag ("expected one
    # argument"): a broker format failing at random. 4,000 draws miss that case with chance ~1e-27.
    ids = [_random_cluster_id() for _ in range(4000)]
    assert not [i for i in ids if i.startswith("-")]
    assert {len(base64.urlsafe_b64decode(i + "==")) for i in ids} == {16} and len(set(ids)) == len(ids)
