from __future__ import annotations

from pathlib import Path

import pytest

from libs.settings import CONFIG_FILE_ENV, CommonSettings, ConfigError, ignored_environment, load_settings
from services.detector.main import DetectorSettings


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


def test_registry_credentials_must_come_in_pairs_and_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCTV_REGISTRY__URL", "https://registry.example:8443/apis/ccompat/v7")
    monkeypatch.setenv("CCTV_REGISTRY__USERNAME", "cctv-detector")
    with pytest.raises(ConfigError, match="CCTV_REGISTRY__PASSWORD is not set"):
        load_settings(CommonSettings)
    monkeypatch.delenv("CCTV_REGISTRY__USERNAME")
    monkeypatch.setenv("CCTV_REGISTRY__PASSWORD", "r3gistry-s3cret")
    with pytest.raises(ConfigError, match="CCTV_REGISTRY__USERNAME is not set") as caught:
        load_settings(CommonSettings)
    assert "r3gistry-s3cret" not in str(caught.value)  # the error shows the section, password masked
    monkeypatch.setenv("CCTV_REGISTRY__USERNAME", "cctv-detector")
    monkeypatch.setenv("CCTV_REGISTRY__SSL_CA_LOCATION", "/etc/cctv/registry-ca/ca.crt")
    monkeypatch.setenv("CCTV_REGISTRY__AUTO_REGISTER", "false")
    registry = load_settings(CommonSettings).registry
    assert (registry.ssl_ca_location, registry.auto_register) == ("/etc/cctv/registry-ca/ca.crt", False)
    assert "r3gistry-s3cret" not in repr(registry)


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


def test_variables_a_service_would_ignore_are_named_with_the_nearest_real_one() -> None:
    environ = {
        "CCTV_KAFKA__BOOTSTRAP_SERVERS": "kafka:9092",  # a section field
        "CCTV_KAFKA__EXTRA__socket.keepalive.enable": "true",  # any key below a plain dict field
        "CCTV_MAX_BATCH": "16",
        "CCTV_MODEL__TENSORRT_CACHE_DIR": "/cache",  # the detector's own
        "CCTV_CONFIG_FILE": "/etc/cctv/config/detector.yaml",
        "CCTV_CAMERA_CREDENTIALS__LOBBY": "user:pw",  # read by name, not a field
        "CCTV_SCHEMAS_DIR": "/opt/cctv/schemas",
        "CCTV_CACHE_DIR": "/var/cache/cctv",  # read outside the settings
        "PATH": "/usr/bin",
        "CCTV_DETECTOR__MAX_BATCH": "16",  # the service name is not a section
        "CCTV_MODEL__SCORE_TRESHOLD": "0.3",  # misspelt
        "CCTV_KAFKA__BOOTSTRAP": "kafka:9092",  # not a field of the section
    }
    assert ignored_environment(DetectorSettings, environ) == [
        "CCTV_DETECTOR__MAX_BATCH is not a setting of this service and is ignored; did you mean CCTV_MAX_BATCH?",
        "CCTV_KAFKA__BOOTSTRAP is not a setting of this service and is ignored; "
        "did you mean CCTV_KAFKA__BOOTSTRAP_SERVERS?",
        "CCTV_MODEL__SCORE_TRESHOLD is not a setting of this service and is ignored; "
        "did you mean CCTV_MODEL__SCORE_THRESHOLD?",
    ]
    # The same variable is fine for the service that has the field.
    assert ignored_environment(CommonSettings, {"CCTV_MAX_BATCH": "16"})[0].startswith("CCTV_MAX_BATCH is not")
