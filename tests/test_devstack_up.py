"""`cctv up` / `cctv down` / the CLI as a newcomer meets them: one stack per broker, a reset that really
resets, fast and clear failures, and the same answers for localhost and 127.0.0.1. Everything runs as
real processes (`python -m cctv.cli ...`) against a real broker and registry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cctv.devstack.process import cache_dir
from tests.kafka_helpers import refusing_port, wait_for

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-360p15.mp4"
TEST_KAFKA_PORT = int(os.environ.get("CCTV_TEST_KAFKA_PORT", "19092"))
RESET_KAFKA_PORT = TEST_KAFKA_PORT + 300


def metrics_offset(kafka_port: int) -> str:
    """Services' metrics ports just above the broker's (kafka_port + 10...), clear of other test runs."""
    return str(kafka_port + 10 - 9101)


def cctv(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cctv.cli", *args],
        cwd=cwd,
        env=os.environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_up(args: list[str], cwd: Path, output: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    with open(output, "w") as out:
        # Its own process group, like a terminal's foreground job, so the test can press Ctrl-C on it.
        return subprocess.Popen(
            [sys.executable, "-m", "cctv.cli", "up", *args],
            cwd=cwd,
            env=os.environ | (env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def camera_file(path: Path, camera_id: str) -> Path:
    path.write_text(
        f"cameras:\n  - camera_id: {camera_id}\n    stream_url: file://{SAMPLE}\n    loop: true\n    realtime: true\n"
    )
    return path


def test_second_up_refuses_while_the_first_keeps_running(
    kafka_broker, schema_registry, unique: str, tmp_path: Path
) -> None:
    camera = f"up-{unique}"
    ports = [
        "--kafka-port",
        str(kafka_broker.port),
        "--registry-port",
        str(schema_registry.port),
        "--rtsp-port",
        "0",
        "--http-port-offset",
        metrics_offset(kafka_broker.port),
        "--service",
        "ingest",
        "--keep-kafka",
    ]
    # Started from a directory outside the checkout: paths come from the package, not the working directory.
    args = [*ports, "--cameras", str(camera_file(tmp_path / "cams.yaml", camera)), "--state-dir", str(tmp_path / "run")]
    output = tmp_path / "first.out"
    first = start_up(args, tmp_path, output)
    bootstrap = f"127.0.0.1:{kafka_broker.port}"
    try:
        wait_for(lambda: "Waiting for alerts" in output.read_text() or first.poll() is not None, 240, "the first stack")
        assert first.poll() is None, output.read_text()
        text = output.read_text()
        assert "ingest" in text and "STARTED" in text  # stdout is a file: plain event lines, no live table
        assert f"published 1 cameras from {tmp_path / 'cams.yaml'}: {camera}" in text

        began = time.monotonic()
        second = cctv("up", *args, cwd=tmp_path, timeout=60)
        assert second.returncode == 3, second.stdout + second.stderr
        refusal = (second.stdout + second.stderr).strip()
        assert "already running" in refusal and f"pid {first.pid}" in refusal and "cctv down" in refusal
        assert time.monotonic() - began < 30
        assert first.poll() is None and "stopping" not in output.read_text()  # the first one untouched

        # localhost and 127.0.0.1 name the same broker and find the same registry.
        by_ip = cctv("cameras", "list", "-b", bootstrap, cwd=tmp_path)
        by_name = cctv("cameras", "list", "-b", f"localhost:{kafka_broker.port}", cwd=tmp_path)
        assert by_ip.returncode == by_name.returncode == 0, by_ip.stderr + by_name.stderr
        assert camera in by_ip.stdout and by_ip.stdout == by_name.stdout

        unknown = cctv("cameras", "delete", f"no-such-{unique}", camera, "-b", bootstrap, cwd=tmp_path)
        assert unknown.returncode == 1 and f"no camera no-such-{unique}" in unknown.stderr
        assert "nothing removed" in unknown.stderr
        assert camera in cctv("cameras", "list", "-b", bootstrap, cwd=tmp_path).stdout  # all or nothing
        removed = cctv("cameras", "delete", camera, "-b", bootstrap, cwd=tmp_path)
        assert removed.returncode == 0 and f"removed 1 cameras: {camera}" in removed.stdout
    finally:
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group, services included
        first.wait(120)
        # Whatever happened above, leave no camera behind for later tests (exit 1 if already removed).
        cctv(
            "cameras", "delete", camera, "-b", bootstrap, cwd=tmp_path, env={"CCTV_REGISTRY__URL": schema_registry.url}
        )
    text = output.read_text()
    assert first.returncode == 0, text
    assert "ingest: stopped" in text and "exited with" not in text
    assert "EXITED" not in text and "RESTARTING" not in text  # the shutdown is not mistaken for a crash
    assert kafka_broker.ready()  # --keep-kafka, and this run did not start it anyway


def test_up_refuses_a_missing_inventory_in_one_line(tmp_path: Path) -> None:
    result = cctv("up", "--cameras", "nowhere.yaml", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    message = (result.stdout + result.stderr).strip()
    assert len(message.splitlines()) == 1 and str(tmp_path / "nowhere.yaml") in message, message


def test_cli_without_a_broker_fails_fast_with_a_hint(tmp_path: Path) -> None:
    with refusing_port() as port:
        began = time.monotonic()
        result = cctv("status", "-b", f"127.0.0.1:{port}", cwd=tmp_path, timeout=60)
        elapsed = time.monotonic() - began
    assert result.returncode != 0 and elapsed < 10, (elapsed, result.stderr)
    assert "cannot reach Kafka" in result.stderr and "make run" in result.stderr
    assert "Traceback" not in result.stderr and "KafkaException" not in result.stderr


@pytest.fixture
def own_cache(tmp_path: Path) -> dict[str, str]:
    """A cache of its own (broker data, registry database) that reuses the downloaded Kafka jars."""
    cache = tmp_path / "cache"
    (cache / "kafka").mkdir(parents=True)
    (cache / "kafka" / "lib").symlink_to(cache_dir() / "kafka" / "lib")
    return {"CCTV_CACHE_DIR": str(cache)}


def test_reset_removes_state_and_the_next_run_starts_with_only_the_sample_cameras(
    own_cache: dict[str, str], tmp_path: Path
) -> None:
    port = str(RESET_KAFKA_PORT)
    common = [
        "--kafka-port",
        port,
        "--registry-port",
        "0",
        "--rtsp-port",
        "0",
        "--http-port-offset",
        metrics_offset(RESET_KAFKA_PORT),
        "--service",
        "ingest",
        "--duration",
        "1",
        "--state-dir",
        str(tmp_path / "run"),
    ]
    down = [
        "down",
        "--purge",
        "--kafka-port",
        port,
        "--registry-port",
        str(RESET_KAFKA_PORT + 1000),
        "--state-dir",
        str(tmp_path / "run"),
    ]
    bootstrap = f"127.0.0.1:{port}"
    try:
        # An earlier experiment left a camera behind.
        old = cctv(
            "up",
            *common,
            "--cameras",
            str(camera_file(tmp_path / "old.yaml", "old-experiment")),
            cwd=tmp_path,
            env=own_cache,
            timeout=300,
        )
        assert old.returncode == 0, old.stdout + old.stderr
        assert "stopped Kafka on port" in old.stdout  # it started that broker, so it stopped it

        again = cctv("up", *common, "--keep-kafka", cwd=tmp_path, env=own_cache, timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "state from earlier runs: 1 other cameras in the inventory (old-experiment)" in again.stdout
        assert "cctv down --purge" in again.stdout

        reset = cctv(*down, cwd=tmp_path, env=own_cache)
        assert reset.returncode == 0, reset.stdout + reset.stderr
        assert "stopped Kafka (pid" in reset.stdout and f"node-{port}" in reset.stdout
        assert not (Path(own_cache["CCTV_CACHE_DIR"]) / "kafka" / f"node-{port}").exists()
        assert not (tmp_path / "run").exists()
        assert (Path(own_cache["CCTV_CACHE_DIR"]) / "kafka" / "lib").exists()  # the jars stay

        # The next run, left running: `cctv down` must find it, stop it, and say so.
        output = tmp_path / "fresh.out"
        fresh = start_up([arg for arg in common if arg not in ("--duration", "1")], tmp_path, output, own_cache)
        wait_for(lambda: "Waiting for alerts" in output.read_text() or fresh.poll() is not None, 240, "the fresh stack")
        assert "fresh state: no other cameras in the inventory, no backlog" in output.read_text()
        listed = cctv("cameras", "list", "-b", bootstrap, cwd=tmp_path, env=own_cache)
        assert listed.returncode == 0, listed.stderr
        assert "campus-file" in listed.stdout and "old-experiment" not in listed.stdout
        stopped = cctv(*down, cwd=tmp_path, env=own_cache, timeout=180)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"stopped `cctv up` (pid {fresh.pid}) and its services: ingest" in stopped.stdout
        assert fresh.wait(30) == 0 and "stopped Kafka on port" in output.read_text()
    finally:
        cctv(*down, cwd=tmp_path, env=own_cache)


def test_dev_stack_runs_the_dispatcher_on_its_own_port_from_its_module() -> None:
    import importlib

    from cctv.devstack.services import DEV_STACK_SERVICES

    specs = {spec.name: spec for spec in DEV_STACK_SERVICES}
    assert specs["dispatcher"].module == "services.dispatcher.main"
    assert callable(importlib.import_module(specs["dispatcher"].module).main)
    ports = [spec.http_port for spec in DEV_STACK_SERVICES]
    assert len(set(ports)) == len(ports)
