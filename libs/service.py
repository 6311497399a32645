"""What every service's main does first: settings, logging, signals, health/metrics endpoint, serde."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Generic

from libs.health import Health, HealthServer
from libs.lifecycle import Shutdown
from libs.logs import setup_logging
from libs.serde import AvroSerde, make_serde
from libs.settings import ConfigError, SettingsT, ignored_environment, load_settings

log = logging.getLogger(__name__)


@dataclass
class ServiceRuntime(Generic[SettingsT]):
    name: str
    settings: SettingsT
    health: Health
    shutdown: Shutdown
    serde: AvroSerde
    http: HealthServer | None

    def close(self) -> None:
        if self.http is not None:
            self.http.stop()


def start_service(name: str, settings_cls: type[SettingsT], install_signals: bool = True) -> ServiceRuntime[SettingsT]:
    """Load and validate settings (exit 2 with a readable message if wrong), then set up the runtime."""
    try:
        settings = load_settings(settings_cls)
    except ConfigError as error:
        print(f"{name}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(name, settings.log)
    for problem in ignored_environment(settings_cls):
        log.warning("%s: %s", name, problem)
    health = Health(settings.http.liveness_timeout_s)
    shutdown = Shutdown()
    if install_signals:
        shutdown.install()
    http = HealthServer(settings.http, health).start()
    log.info(
        "%s starting; metrics and probes on port %d; kafka %s; serde %s",
        name,
        http.port,
        settings.kafka.bootstrap_servers,
        "confluent (registry)" if settings.registry.url else "single-object",
    )
    return ServiceRuntime(name, settings, health, shutdown, make_serde(settings.registry), http)
