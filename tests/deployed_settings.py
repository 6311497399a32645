"""Load a service's settings exactly as a deployment gives them (environment + optional config file).

Used by the Helm chart and compose tests: every variable and config key those artefacts pass must be
one the service really reads, or a typo silently leaves a default in place."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from libs.settings import (
    CONFIG_FILE_ENV,
    ENV_PREFIX,
    CommonSettings,
    ignored_environment,
    load_settings,
)

SETTINGS_CLASSES = {
    "ingest": "services.ingest.main:IngestSettings",
    "frame-sampler": "services.frame_sampler.main:FrameSamplerSettings",
    "detector": "services.detector.main:DetectorSettings",
    "alert-router": "services.alert_router.main:AlertRouterSettings",
    "camera-controller": "services.camera_controller.main:ControllerSettings",
    "console": "services.console.settings:ConsoleSettings",
    "clip-writer": "services.clip_writer.settings:ClipWriterSettings",
    "dispatcher": "services.dispatcher.main:DispatcherSettings",
    "share-gateway": "services.share_gateway.settings:ShareGatewaySettings",
}


def settings_class(component: str) -> type[CommonSettings]:
    module, name = SETTINGS_CLASSES[component].split(":")
    settings_cls: type[CommonSettings] = getattr(importlib.import_module(module), name)
    return settings_cls


def load_as_deployed(
    component: str,
    env: dict[str, str],
    config: dict[str, Any] | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> CommonSettings:
    """Settings from exactly `env` (other CCTV_* variables of this process removed) and `config` as the
    YAML settings file; fails the test for any variable the service would ignore."""
    settings_cls = settings_class(component)
    assert ignored_environment(settings_cls, env) == [], component
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name != CONFIG_FILE_ENV:
            monkeypatch.setenv(name, value)
    if config is not None:
        config_file = tmp_path / f"{component}.yaml"
        config_file.write_text(yaml.safe_dump(config))
        monkeypatch.setenv(CONFIG_FILE_ENV, str(config_file))
    return load_settings(settings_cls)
