"""Evidence snapshots for alerts: the alert's frame read back from cctv.frames.v1 by its Kafka coordinates
(the frames topic is the claim check) and drawn with the incident's boxes."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from confluent_kafka import KafkaException, TopicPartition
from prometheus_client import Counter

from libs.kafka import make_reader
from libs.records import Frame
from libs.serde import AvroSerde
from libs.settings import KafkaSettings
from services.alert_router.model import AlertEvent, FrameRef
from services.alert_router.snapshot import SnapshotError, render_snapshot

log = logging.getLogger(__name__)

EVIDENCE_MISSING = Counter("cctv_alert_router_evidence_missing_total", "Alerts sent without a snapshot", ["reason"])


class FrameFetcher:
    """Fetches one frame by its Kafka coordinates (the frames topic is the claim check)."""

    def __init__(self, kafka: KafkaSettings, serde: AvroSerde, cache_size: int = 64) -> None:
        self.serde = serde
        self.consumer = make_reader(kafka, "alert-evidence", **{"fetch.wait.max.ms": 10})
        self.cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self.cache_size = cache_size

    def jpeg(self, ref: FrameRef, timeout_s: float = 5.0) -> bytes | None:
        key = (ref.topic, ref.partition, ref.offset)
        if key in self.cache:
            return self.cache[key]
        # A frame already deleted by retention is known from the partition's low watermark at once;
        # polling for it would stall the router (and every camera's alerts) for the whole timeout.
        low, high = self.consumer.get_watermark_offsets(TopicPartition(ref.topic, ref.partition), timeout=timeout_s)
        if not low <= ref.offset < high:
            return None
        self.consumer.assign([TopicPartition(ref.topic, ref.partition, ref.offset)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self.consumer.poll(0.2)
            if message is None or message.error():
                continue
            if message.offset() != ref.offset:
                return None  # the frame expired from the topic (retention): no evidence image
            jpeg = Frame.from_avro(self.serde.deserialize(ref.topic, "Frame", message.value())).jpeg
            self.cache[key] = jpeg
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
            return jpeg
        return None


def evidence_snapshot(fetcher: FrameFetcher, event: AlertEvent, max_bytes: int, max_dim: int) -> bytes | None:
    """The alert's snapshot: its frame fetched by coordinates, boxes drawn; None (counted) when unavailable."""
    if event.frame_ref is None:
        return None
    try:
        jpeg = fetcher.jpeg(event.frame_ref)
    except KafkaException as error:
        # The broker is away (restarting, partition leader moving): send the alert now without its image
        # rather than crash the worker (the alert itself waits in the producer until the broker is back).
        EVIDENCE_MISSING.labels("broker-unavailable").inc()
        log.warning("no snapshot for alert %s: frame not readable now (%s)", event.alert_id, error)
        return None
    if jpeg is None:
        EVIDENCE_MISSING.labels("frame-expired").inc()
        return None
    label = f"{event.rule_type} {event.kind.value} - {event.zone}"
    try:
        return render_snapshot(jpeg, event.boxes, label, max_bytes, max_dim)
    except SnapshotError as error:
        EVIDENCE_MISSING.labels("render-failed").inc()
        log.warning("no snapshot for alert %s: %s", event.alert_id, error)
        return None
