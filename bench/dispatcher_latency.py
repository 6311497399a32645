"""Dispatcher delivery latency and throughput against a real broker and a real local HTTP receiver.

    PYTHONPATH=. python bench/dispatcher_latency.py --bootstrap 127.0.0.1:31092 [--alerts 300]

Publishes N routed alerts to cctv.alerts.police.v1 as fast as the producer goes, with a dispatcher
(subprocess) delivering to a receiver that verifies every signature; prints produce→accepted latency
percentiles (receiver clock = producer clock: same host) and the delivery rate.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from cctv.devstack.services import ServiceProcess
from libs.kafka import create_topics, make_producer
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import destination_topic, pipeline_topics
from tests.kafka_helpers import wait_for
from tests.test_dispatcher import SECRET, alert, position_group_at_end
from tests.webhook_receiver import Receiver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--rate", type=float, default=0.0, help="alerts per second (0 = one burst)")
    args = parser.parse_args()
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap)
    create_topics(kafka, pipeline_topics())
    group = f"bench-dispatcher-{uuid.uuid4().hex[:8]}"
    position_group_at_end(kafka, group)
    receiver = Receiver(SECRET).start()

    def arrivals() -> dict[str, float]:
        with receiver.lock:
            return {e["id"]: e["_received_at"] for e in receiver.accepted}

    with tempfile.TemporaryDirectory() as scratch:
        routes = Path(scratch) / "routes.yaml"
        routes.write_text(
            yaml.safe_dump(
                {
                    "routes": [],
                    "endpoints": {
                        "police": {"webhooks": [{"name": "hq", "url": receiver.url, "secret": {"env": "BENCH_SECRET"}}]}
                    },
                }
            )
        )
        env = {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": args.bootstrap,
            "CCTV_HTTP__PORT": "0",
            "CCTV_LOG__FORMAT": "text",
            "CCTV_GROUP_ID": group,
            "CCTV_ROUTES_FILE": str(routes),
            "BENCH_SECRET": SECRET.decode(),
        }
        service = ServiceProcess("dispatcher", env, Path(scratch) / "d.log", module="services.dispatcher.main").start()
        try:
            warm = f"warm-{uuid.uuid4().hex[:6]}"
            serde, topic = AvroSerde(shipped_catalog()), destination_topic("police")
            producer = make_producer(kafka, "bench")
            producer.produce(topic, key=warm, value=serde.serialize(topic, "Alert", alert(warm)))
            producer.flush(30)
            wait_for(lambda: f"{warm}:new:0" in arrivals(), 120, "the warm-up event")
            sent: dict[str, float] = {}
            started = time.time()
            for i in range(args.alerts):
                record = alert(f"bench-{i}-{uuid.uuid4().hex[:6]}")
                record["snapshot_jpeg"] = None
                sent[f"{record['alert_id']}:new:0"] = time.time()
                producer.produce(topic, key=record["alert_id"], value=serde.serialize(topic, "Alert", record))
                producer.poll(0)
                if args.rate:
                    time.sleep(max(0.0, started + (i + 1) / args.rate - time.time()))  # pace the load
            producer.flush(30)
            wait_for(lambda: all(k in arrivals() for k in sent), 300, "every event")
            received = arrivals()
            elapsed = max(received[k] for k in sent) - started
        finally:
            service.stop()
            receiver.stop()
    latencies = sorted((received[k] - t) * 1000 for k, t in sent.items())

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    print(
        json.dumps(
            {
                "alerts": args.alerts,
                "p50_ms": round(pick(0.5)),
                "p95_ms": round(pick(0.95)),
                "max_ms": round(latencies[-1]),
                "rate": args.rate or "burst",
                "events_per_s": round(args.alerts / elapsed, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
