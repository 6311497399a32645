"""share-gateway service loop: live shares → HLS for agencies, scaled and exposed apart from the console.

Consumes: cctv.shares.v1 (every share, from the beginning: each replica serves any link),
cctv.video.packets.v1 (from its end; only the partitions holding cameras with a live share are read,
re-assigned as shares change, and only those cameras' packets decoded).
Produces: cctv.audit.v1 (share opened by a viewer, share expired), cctv.shares.v1 (expiry recorded).
Serves: share links on CCTV_EDGE__PORT (public); /healthz, /readyz and /metrics on CCTV_HTTP__PORT.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from typing import Any

import uvicorn
from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge

from libs.audit import SCHEMA as AUDIT_SCHEMA
from libs.audit import audit_record
from libs.kafka import make_producer, make_reader, missing_topics, topic_partitions, wait_for_broker
from libs.serde import SerdeError
from libs.service import ServiceRuntime, start_service
from libs.shares import SCHEMA as SHARE_SCHEMA
from libs.shares import ShareBook, ShareFollower, ShareTokens, ended, expiry_audit_id
from libs.topics import AUDIT, SHARES, VIDEO_PACKETS
from services.share_gateway.core import UnmaskedPolicy, ViewerSessions, partitions_of, releasable
from services.share_gateway.edge import create_edge_app
from services.share_gateway.settings import ShareGatewaySettings
from services.share_gateway.streams import LiveStreams

log = logging.getLogger(__name__)
SERVICE = "share-gateway"
SYNC_S = 0.5  # how often live shares are re-read: streams start/stop and expiries are recorded
PARTITION_COUNT_S = 30.0  # how often the video topic's partition count is re-read (topics may grow)

READ_PARTITIONS = Gauge(
    "cctv_share_gateway_video_partitions", "Partitions of cctv.video.packets.v1 read (those of shared cameras)"
)
PARTITION_READ = Gauge("cctv_share_gateway_video_partition_read", "1 for each video partition read", ["partition"])
VIDEO_BYTES = Counter(
    "cctv_share_gateway_video_bytes_fetched_total", "Bytes of cctv.video.packets.v1 fetched from the brokers"
)


class Gateway:
    def __init__(self, runtime: ServiceRuntime[ShareGatewaySettings]) -> None:
        settings = self.settings = runtime.settings
        self.runtime = runtime
        self.book = ShareBook()
        self.tokens = ShareTokens(settings.read_share_key())
        self.streams = LiveStreams(settings.segment_s, settings.playlist_segments, self._masker_factory())
        self.sessions = ViewerSessions(settings.viewer_idle_s)
        self.producer = make_producer(settings.kafka, SERVICE, runtime.health)
        self.follower = ShareFollower(settings.kafka, runtime.serde, SHARES, self.book, "share-gateway-shares")
        self._stop = threading.Event()
        self._video = threading.Thread(target=self._video_loop, name="video", daemon=True)
        # Raises RoutingConfigError (a ValueError) for an unreadable or invalid file: refused at start.
        self.unmasked_allowed = UnmaskedPolicy(settings.routes_file)
        self._assigned: frozenset[int] = frozenset()
        self._partition_count: int | None = None
        self._count_due = 0.0
        self._bytes_seen = 0

    def _masker_factory(self) -> Any:
        from services.share_gateway.masked import masked_reencoder_factory

        settings = self.settings
        return masked_reencoder_factory(settings.masking, settings.masking_upscale, settings.masking_people)

    def audit(self, record: dict[str, Any]) -> None:
        value = self.runtime.serde.serialize(AUDIT, AUDIT_SCHEMA, record)
        self.producer.produce(AUDIT, key=record["actor"], value=value)
        self.producer.poll(0)

    def opened(self, share: dict[str, Any], client: str) -> None:
        """A viewer opened a share: once per viewing session, with the client's address."""
        self.audit(
            audit_record(
                share["agency"],
                "share.opened" if share["masked"] else "share.opened.unmasked",
                allowed=True,
                instance=self.settings.instance_id,
                role="agency",
                camera_id=share["camera_id"],
                alert_id=share.get("alert_id"),
                detail=f"share {share['share_id']}; masked={str(share['masked']).lower()}",
                client_address=client,
            )
        )

    def _record_expiries(self, now_ms: int) -> None:
        """Every replica sees an expiry; each writes the same audit id, so the ledger holds it once."""
        for share in self.book.expired_unrecorded(now_ms):
            record = audit_record(
                share["agency"],
                "share.expired",
                allowed=True,
                instance=self.settings.instance_id,
                role="agency",
                camera_id=share["camera_id"],
                alert_id=share.get("alert_id"),
                detail=f"share {share['share_id']}; created by {share['created_by']}; purpose: {share['purpose']}",
                at_ms=share["expires_at"],
            ) | {"audit_id": expiry_audit_id(share["share_id"])}
            self.audit(record)
            update = ended(share, "EXPIRED", self.settings.instance_id, now_ms)
            self.producer.produce(
                SHARES, key=share["share_id"], value=self.runtime.serde.serialize(SHARES, SHARE_SCHEMA, update)
            )
            self.book.apply(share["share_id"], update)  # not again before our own record comes back
            log.info("share %s of camera %s expired", share["share_id"], share["camera_id"])

    def _video_loop(self) -> None:
        consumer = make_reader(
            self.settings.kafka,
            "share-gateway-video",
            **{"fetch.wait.max.ms": 50, "statistics.interval.ms": 1000, "stats_cb": self._fetched},
        )
        health = self.runtime.health
        next_sync = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_sync:
                    next_sync = now + SYNC_S
                    now_ms = int(time.time() * 1000)
                    if self.book.caught_up:
                        self._record_expiries(now_ms)
                    live = [s for s in self.book.live(now_ms) if releasable(s, self.unmasked_allowed)]
                    self.streams.sync(live)
                    self._read_only_shared(consumer, now)
                    ready = self.book.caught_up and self.follower.alive()
                    health.set_ready(ready, "shares not yet read to the end of " + SHARES)
                health.beat()
                for message in consumer.consume(200, 0.1):
                    self._take(message)
                self.producer.poll(0)
        finally:
            consumer.close()

    def _fetched(self, stats_json: str) -> None:
        """librdkafka's statistics: the message bytes fetched so far (cumulative) → the counter."""
        total = int(json.loads(stats_json).get("rxmsg_bytes", 0))
        if total > self._bytes_seen:
            VIDEO_BYTES.inc(total - self._bytes_seen)
            self._bytes_seen = total

    def _read_only_shared(self, consumer: Any, now: float) -> None:
        """Assign exactly the partitions that hold shared cameras (each read from its end), so the
        gateway fetches none of the other cameras' video; re-assigned whenever shares change."""
        if self._partition_count is None or now >= self._count_due:
            try:
                self._partition_count = len(topic_partitions(consumer, VIDEO_PACKETS, timeout_s=5.0))
                self._count_due = now + PARTITION_COUNT_S
            except (KafkaException, RuntimeError) as error:  # broker away: keep the count known, retry soon
                log.warning("partition count of %s not read: %s", VIDEO_PACKETS, error)
                self._count_due = now + SYNC_S * 10
                if self._partition_count is None:
                    return
        wanted = partitions_of(self.streams.cameras, self._partition_count)
        added, dropped = wanted - self._assigned, self._assigned - wanted
        if dropped:
            consumer.incremental_unassign([TopicPartition(VIDEO_PACKETS, p) for p in sorted(dropped)])
            for partition in dropped:
                PARTITION_READ.remove(str(partition))
        if added:
            consumer.incremental_assign([TopicPartition(VIDEO_PACKETS, p, OFFSET_END) for p in sorted(added)])
            for partition in added:
                PARTITION_READ.labels(str(partition)).set(1)
        if added or dropped:
            self._assigned = wanted
            READ_PARTITIONS.set(len(wanted))
            log.info("reading video partitions %s (of %d)", sorted(wanted) or "none", self._partition_count)

    def _take(self, message: Any) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("video consumer: %s", error.str())
            return
        # The key is the camera id: packets of unshared cameras are skipped without decoding.
        if (message.key() or b"").decode(errors="replace") not in self.streams.cameras:
            return
        try:
            record = self.runtime.serde.deserialize(VIDEO_PACKETS, "VideoPacket", message.value())
        except SerdeError as error:
            log.warning("undecodable video packet skipped: %s", error)
            return
        self.streams.feed(record)

    def start(self) -> Gateway:
        self.follower.start()
        self._video.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._video.join(10)
        self.streams.close()
        self.follower.stop()
        self.producer.flush(10)


def main() -> None:
    runtime = start_service(SERVICE, ShareGatewaySettings, install_signals=False)
    settings = runtime.settings
    try:
        gateway = Gateway(runtime)
    except (OSError, ValueError) as error:
        log.error("share-gateway configuration: %s", error)
        runtime.close()
        raise SystemExit(2) from None
    wait_for_broker(settings.kafka, timeout_s=60)
    missing = missing_topics(settings.kafka, (SHARES, VIDEO_PACKETS, AUDIT))
    if missing:
        log.error("topics missing: %s (run `cctv topics create`)", ", ".join(missing))
        runtime.close()
        raise SystemExit(2)
    gateway.start()
    app = create_edge_app(
        gateway.book,
        gateway.tokens,
        gateway.streams,
        gateway.sessions,
        gateway.opened,
        settings.first_segment_wait_s,
        gateway.unmasked_allowed,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.edge.host,
            port=settings.edge.port,
            log_level="warning",
            access_log=False,  # URLs carry the share token: a credential never written to logs
            proxy_headers=True,
            forwarded_allow_ips=settings.edge.forwarded_allow_ips,
            timeout_graceful_shutdown=5,
        )
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    def stop(_signum: int, _frame: object) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("share links served on http://%s:%d/s/<token>/", settings.edge.host, settings.edge.port)
    try:
        server.run()
    finally:
        gateway.stop()
        runtime.close()


if __name__ == "__main__":
    main()
