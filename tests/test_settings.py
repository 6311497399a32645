from __future__ import annotations

from pathlib import Path

import pytest

from libs.settings import CONFIG_FILE_ENV, CommonSettings, ConfigError, load_settings


def test_env_and_yaml_with_env_winning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "cctv.yaml"
    config.write_text(
        "kafka:\n  bootstrap_servers: kafka-a:9092,kafka-b:9092\n  security_protocol: SASL_SSL\n"
        "  sasl_mechanism: SCRAM-SHA-512\n  sasl_username: cctv\n  extra:\n    socket.keepalive.enable: 'true'\n"
        "log:\n  level: DEBUG\n"
    )
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    monkeypatch.setenv("CCTV_KAFKA__SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("CCTV_LOG__LEVEL", "WARNING")
    settings = load_settings(CommonSettings)
    assert settings.log.level == "WARNING"
    client = settings.kafka.client_config()
    assert client["bootstrap.servers"] == "kafka-a:9092,kafka-b:9092"
    assert client["security.protocol"] == "SASL_SSL"
    assert client["sasl.mechanism"] == "SCRAM-SHA-512"
    assert client["sasl.password"] == "s3cret"
    assert client["socket.keepalive.enable"] == "true"
    assert "s3cret" not in repr(settings)


def test_error_names_the_key_and_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCTV_KAFKA__SECURITY_PROTOCOL", "SASL_TLS")
    monkeypatch.setenv("CCTV_HTTP__PORT", "99999")
    with pytest.raises(ConfigError) as caught:
        load_settings(CommonSettings)
    message = str(caught.value)
    assert "CCTV_KAFKA__SECURITY_PROTOCOL = 'SASL_TLS'" in message
    assert "CCTV_HTTP__PORT = '99999'" in message
    assert "less than or equal to 65535" in message


def test_bad_bootstrap_and_unknown_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("kafka:\n  bootstrap_servers: localhost\nkafak: {}\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    with pytest.raises(ConfigError) as caught:
        load_settings(CommonSettings)
    message = str(caught.value)
    assert "CCTV_KAFKA__BOOTSTRAP_SERVERS = 'localhost'" in message and "host:port" in message
    assert "CCTV_KAFAK" in message


def test_missing_config_file_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="nope.yaml.*file not found"):
        load_settings(CommonSettings)
