"""Structured logging: one JSON object per line (or plain text for a terminal), credentials scrubbed."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from libs.redact import redact_text
from libs.settings import LogSettings

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Last line of defence: scrub credentials from every message, whatever the caller formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


def setup_logging(service: str, settings: LogSettings) -> None:
    """Configure the root logger once per process; extra fields given via `extra=` become JSON keys."""
    handler: logging.Handler
    if settings.file:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(settings.file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.level)
    # Client libraries log every HTTP request (schema registry lookups) at INFO.
    for chatty in ("httpx", "httpx2", "httpcore", "aiokafka", "faust.transport.drivers.aiokafka"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
