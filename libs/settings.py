"""Typed settings shared by every service and the CLI.

Values come from, in order of precedence: explicit arguments, environment variables
(prefix ``CCTV_``, nested keys joined by ``__``, e.g. ``CCTV_KAFKA__BOOTSTRAP_SERVERS``),
then the YAML file named by ``CCTV_CONFIG_FILE``. Errors are reported with the exact
key (as an environment variable) and the offending value.
"""

from __future__ import annotations

import difflib
import logging
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "CCTV_"
CONFIG_FILE_ENV = "CCTV_CONFIG_FILE"
# CCTV_* variables that are read outside the settings models, so never "ignored": the config file
# pointer, the Avro contracts' folder (libs.serde), the project cache (jars, broker data, model engines;
# cctv.devstack), ingest's camera credentials (read per camera by name), and the test suite's and
# benchmark's port choices.
NON_FIELD_ENV_NAMES = frozenset({CONFIG_FILE_ENV, "CCTV_SCHEMAS_DIR", "CCTV_CACHE_DIR"})
NON_FIELD_ENV_PREFIXES = ("CCTV_CAMERA_CREDENTIALS__", "CCTV_TEST_", "CCTV_BENCH_")


class ConfigError(Exception):
    """Configuration is invalid; the message says which key, which value and why."""


class KafkaSettings(BaseModel):
    """How to reach Kafka. Security settings are passed through to librdkafka."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    client_id_prefix: str = "cctv"
    # Any other librdkafka property, e.g. {"socket.keepalive.enable": "true"}.
    extra: dict[str, str] = Field(default_factory=dict)

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_have_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
        return value

    def client_config(self) -> dict[str, Any]:
        """librdkafka properties common to producers, consumers and admin clients."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
        }
        config.update({key: value for key, value in optional.items() if value is not None})
        config.update(self.extra)
        # librdkafka's own log lines go through Python logging (structured, redacted), not raw stderr.
        config["logger"] = logging.getLogger("librdkafka")
        return config


class RegistrySettings(BaseModel):
    """Schema registry with a Confluent-compatible API (e.g. Apicurio's /apis/ccompat/v7).

    Without a URL, records use Avro single-object encoding resolved against the shipped schemas.
    """

    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    # CA bundle that signed the registry's certificate (https:// URLs); None: the system's trust store.
    ssl_ca_location: str | None = None
    # Register missing schemas on first write. Only the platform's schema writer (`cctv topics create`)
    # may register on a secured registry; services there run with False and only look schemas up.
    auto_register: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s):// URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credentials_complete(self) -> RegistrySettings:
        if (self.username is None) != (self.password is None):
            missing = "CCTV_REGISTRY__PASSWORD" if self.password is None else "CCTV_REGISTRY__USERNAME"
            raise ValueError(f"registry basic auth needs both a username and a password; {missing} is not set")
        return self


class HttpSettings(BaseModel):
    """The per-service HTTP endpoint serving /metrics, /healthz and /readyz."""

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    # A loop that has not reported progress for this long is considered hung (/healthz fails).
    liveness_timeout_s: float = Field(default=60.0, gt=0)


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"
    file: Path | None = None


class CommonSettings(BaseSettings):
    """Settings every service shares. Services subclass this and add their own section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    instance_id: str = Field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def _env_name(location: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in location)


SECRET_KEY_PARTS = ("password", "secret", "token")


def _redacted(location: tuple[int | str, ...], value: Any) -> Any:
    """The offending value for an error message, with credentials masked (a model-level error carries the
    whole section, password included)."""
    if location and any(part in str(location[-1]).lower() for part in SECRET_KEY_PARTS):
        return "***"
    if isinstance(value, dict):
        return {key: _redacted((*location, key), item) for key, item in value.items()}
    return value


def load_settings(settings_cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build settings, turning validation failures into one readable ConfigError."""
    config_file = os.environ.get(CONFIG_FILE_ENV)
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"{CONFIG_FILE_ENV}={config_file!r}: file not found")
    try:
        return settings_cls(**overrides)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            key = _env_name(item["loc"]) if item["loc"] else ENV_PREFIX + "*"
            problems.append(f"  {key} = {_redacted(item['loc'], item.get('input'))!r}: {item['msg']}")
        source = f" (environment or {config_file})" if config_file else " (environment)"
        raise ConfigError(f"invalid configuration{source}:\n" + "\n".join(problems)) from None


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The settings section type behind a field annotation (`Section`, `Section | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None


def _env_names(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for field_name, field in model.model_fields.items():
        name = f"{prefix}{field_name.upper()}"
        names.append(name)
        section = _nested_model(field.annotation)
        if section is not None:
            names.extend(_env_names(section, f"{name}__"))
    return names


def _accepts(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    section = _nested_model(field.annotation)
    # Below a plain field (a dict, say) any key may follow; below a section it must be one of its fields.
    return section is None or _accepts(section, parts[1:])


def ignored_environment(settings_cls: type[CommonSettings], environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per CCTV_* variable that these settings do not read, with the nearest real name.

    A misspelt or misplaced variable is otherwise silently ignored and the default quietly used."""
    environ = os.environ if environ is None else environ
    known = _env_names(settings_cls, ENV_PREFIX)
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NON_FIELD_ENV_NAMES or upper.startswith(NON_FIELD_ENV_PREFIXES):
            continue
        if _accepts(settings_cls, upper[len(ENV_PREFIX) :].lower().split("__")):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        problems.append(f"{name} is not a setting of this service and is ignored{hint}")
    return problems
