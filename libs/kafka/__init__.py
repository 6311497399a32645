"""Kafka for every service: clients with safe defaults (`clients`), reading compacted topics to their
end (`compacted`), what flows through a loop and the dead-letter publisher (`records`), and the
consume → handle → produce → commit loop with its pieces (`loop`)."""

from libs.kafka.clients import (
    BrokerProbe,
    broker_health_callback,
    create_topics,
    high_watermark,
    key_partition,
    make_admin,
    make_consumer,
    make_producer,
    make_reader,
    missing_topics,
    topic_partitions,
    wait_for_broker,
)
from libs.kafka.compacted import (
    CatchUp,
    assign_from_beginning,
    decode_latest,
    read_compacted,
)
from libs.kafka.loop import (
    Backpressure,
    BatchHandler,
    ConsumeProduceLoop,
    DeliveryFailed,
    Producing,
    RecordDecoder,
    Subscription,
    deliver_then_commit,
    flush_and_close,
)
from libs.kafka.period import read_since
from libs.kafka.records import (
    DeadLetterPublisher,
    Incoming,
    Outgoing,
    Rejected,
    SourceRecord,
    coordinates,
)

__all__ = [
    "Backpressure",
    "BatchHandler",
    "BrokerProbe",
    "CatchUp",
    "ConsumeProduceLoop",
    "DeadLetterPublisher",
    "DeliveryFailed",
    "Incoming",
    "Outgoing",
    "Producing",
    "RecordDecoder",
    "Rejected",
    "SourceRecord",
    "Subscription",
    "assign_from_beginning",
    "broker_health_callback",
    "coordinates",
    "create_topics",
    "decode_latest",
    "deliver_then_commit",
    "flush_and_close",
    "high_watermark",
    "key_partition",
    "make_admin",
    "make_consumer",
    "make_producer",
    "make_reader",
    "missing_topics",
    "read_compacted",
    "read_since",
    "topic_partitions",
    "wait_for_broker",
]
