"""Prometheus metrics every Kafka loop shares. Service-specific metrics live with the service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_CONSUMED = Counter("cctv_records_consumed_total", "Records consumed", ["service", "topic"])
RECORDS_PRODUCED = Counter("cctv_records_produced_total", "Records produced", ["service", "topic"])
DEAD_LETTERS = Counter("cctv_dead_letters_total", "Records sent to the dead-letter topic", ["service", "error_type"])
DELIVERY_FAILURES = Counter("cctv_delivery_failures_total", "Produce deliveries that failed", ["service", "topic"])
BATCH_SECONDS = Histogram(
    "cctv_batch_seconds",
    "Time to process one consumed batch, produce included",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ASSIGNED_PARTITIONS = Gauge("cctv_assigned_partitions", "Partitions currently assigned", ["service"])
PAUSED_PARTITIONS = Gauge("cctv_paused_partitions", "Partitions paused by backpressure", ["service"])
