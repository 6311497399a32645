"""Platform events out of the supervisor: a readable terminal line and a record on cctv.platform-events.v1."""

from __future__ import annotations

import logging
from datetime import datetime

from confluent_kafka import Producer

from cctv.devstack.supervisor import PlatformEvent
from libs.serde import AvroSerde
from libs.settings import KafkaSettings
from libs.topics import PLATFORM_EVENTS

log = logging.getLogger(__name__)

EVENT_STYLE = {"STARTED": "green", "STOPPED": "dim", "EXITED": "yellow", "RESTARTING": "yellow", "GAVE_UP": "bold red"}


def event_line(event: PlatformEvent, markup: bool = True) -> str:
    """e.g. '02:31:07  detector      EXITED      killed by SIGKILL after 40 s up; log run/logs/detector.log'."""
    clock = datetime.fromtimestamp(event.timestamp / 1000).strftime("%H:%M:%S")
    kind = f"{event.event:<10}"
    if markup:
        kind = f"[{EVENT_STYLE.get(event.event, '')}]{kind}[/]"
    return f"{clock}  {event.service:<14} {kind}  {event.detail or ''}"


class PlatformEventPublisher:
    """Publishes PlatformEvent records keyed by service name; failures are logged, never raised."""

    def __init__(self, settings: KafkaSettings, serde: AvroSerde) -> None:
        self.serde = serde
        self.producer = Producer(
            settings.client_config()
            | {
                "client.id": "cctv-supervisor",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )

    def publish(self, event: PlatformEvent) -> None:
        try:
            value = self.serde.serialize(PLATFORM_EVENTS, "PlatformEvent", event.as_record())
            self.producer.produce(PLATFORM_EVENTS, key=event.service.encode(), value=value, on_delivery=_report_failure)
            self.producer.poll(0)
        except Exception as error:  # noqa: BLE001 — the console misses one event; the terminal still shows it
            log.warning("platform event %s %s not published: %s", event.service, event.event, error)

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush; returns how many events could not be delivered in time."""
        return self.producer.flush(timeout_s)


def _report_failure(error: object, message: object) -> None:
    if error is not None:
        log.warning("platform event not delivered: %s", error)
