"""The share gateway reads only the partitions of cctv.video.packets.v1 that hold shared cameras, and plays
an unmasked share only while the routing file lets its agency have unmasked video, against
the real stack: real broker and registry, the real sample's packets for several cameras keyed as ingest
keys them, and the gateway as its own process. The bytes it fetches (librdkafka's statistics, exported on
/metrics) are compared with what a reader of every partition fetches for the same records: the gateway's
behaviour before this change. The numbers are printed (docs/benchmarks/shares.md)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import yaml
from confluent_kafka import TopicPartition

from cctv.devstack.services import ServiceProcess
from libs.kafka import create_topics, high_watermark, key_partition, make_producer, make_reader, topic_partitions
from libs.serde import make_serde
from libs.settings import KafkaSettings, RegistrySettings
from libs.shares import SCHEMA as SHARE_SCHEMA
from libs.shares import ShareBook, ShareFollower, ShareTokens, ended, new_share
from libs.topics import SHARES, VIDEO_PACKETS, pipeline_topics
from tests.clip_helpers import sample_packets
from tests.kafka_helpers import free_port, wait_for

CAMERAS = 6  # one shared, five not, each in a partition of its own
SHARE_KEY = "partition-test-key-" + "p" * 32
ROUTES = {"routes": [], "endpoints": {"police": {"unmasked": True}, "fire": {}}}


def cameras_in_distinct_partitions(partitions: int, avoid: set[int], unique: str) -> list[str]:
    """Camera ids, each in a partition of its own and none in `avoid` (read already for others' shares)."""
    count = min(CAMERAS, partitions - len(avoid))
    assert count >= 3, f"shares left live on this broker keep {sorted(avoid)} read"
    chosen: dict[int, str] = {}
    for n in range(10_000):
        camera = f"part-{unique}-{n}"
        partition = key_partition(camera.encode(), partitions)
        if partition not in avoid:
            chosen.setdefault(partition, camera)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError("no camera ids in distinct partitions")


def partitions_read(url: str) -> set[int]:
    text = httpx.get(url, timeout=10).text
    return {int(p) for p in re.findall(r'^cctv_share_gateway_video_partition_read\{partition="(\d+)"\} 1', text, re.M)}


def metric(url: str, name: str) -> float | None:
    found = re.search(rf"^{name} ([0-9.e+]+)$", httpx.get(url, timeout=10).text, re.MULTILINE)
    return float(found.group(1)) if found else None


@pytest.fixture(scope="module")
def setup(kafka_broker, schema_registry, tmp_path_factory) -> Iterator[dict]:
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)
    create_topics(kafka, pipeline_topics())
    tmp = tmp_path_factory.mktemp("share-partitions")
    metrics_port, edge_port = free_port(), free_port()
    routes = tmp / "routes.yaml"  # the dispatcher's routing file, as the chart mounts it
    routes.write_text(yaml.safe_dump(ROUTES))
    gateway = ServiceProcess(
        "share-gateway",
        {
            "CCTV_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "CCTV_REGISTRY__URL": schema_registry.url,
            "CCTV_LOG__FORMAT": "text",
            "CCTV_HTTP__PORT": str(metrics_port),
            "CCTV_EDGE__PORT": str(edge_port),
            "CCTV_EDGE__HOST": "127.0.0.1",
            "CCTV_SHARE_KEY": SHARE_KEY,
            "CCTV_ROUTES_FILE": str(routes),
        },
        tmp / "gateway.log",
        module="services.share_gateway.main",
    ).start()
    info = {
        "kafka": kafka,
        "serde": make_serde(RegistrySettings(url=schema_registry.url)),
        "gateway": gateway,
        "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
        "edge": f"http://127.0.0.1:{edge_port}",
        "routes": routes,
    }
    try:

        def up() -> bool:
            try:
                return not gateway.alive or metric(info["metrics"], "cctv_share_gateway_video_partitions") is not None
            except httpx.TransportError:
                return False

        wait_for(up, 90, "the gateway's metrics")
        assert gateway.alive, gateway.log_text()[-3000:]
        yield info
    finally:
        assert gateway.stop() == 0, gateway.log_text()[-3000:]


def fetched_by_a_reader_of_every_partition(kafka: KafkaSettings, starts: dict[int, int], ends: dict[int, int]) -> dict:
    """What the gateway used to fetch: every partition, over the same offsets. Bytes per partition."""
    latest: dict[str, tuple[float, dict]] = {}
    reader = make_reader(
        kafka,
        "all-partitions",
        **{"statistics.interval.ms": 200, "stats_cb": lambda s: latest.update(s=(time.monotonic(), json.loads(s)))},
    )
    try:
        reader.assign([TopicPartition(VIDEO_PACKETS, p, o) for p, o in starts.items()])
        position = dict(starts)

        def read_to_the_end() -> bool:
            for message in reader.consume(500, 0.2):
                if message.error() is None:
                    position[message.partition()] = message.offset() + 1
            return all(position[p] >= ends[p] for p in ends)

        wait_for(read_to_the_end, 120, "every partition read to its end")
        stats_after = time.monotonic()

        def stats_of_everything() -> dict | None:
            reader.poll(0.1)
            at, stats = latest.get("s", (0.0, {}))
            return stats if at > stats_after else None  # statistics made after the last record was read

        stats = wait_for(stats_of_everything, 30, "the reader's statistics")
        partitions = stats["topics"][VIDEO_PACKETS]["partitions"]
        return {"total": stats["rxmsg_bytes"], **{p: partitions[str(p)]["rxbytes"] for p in starts}}
    finally:
        reader.close()


def test_the_gateway_reads_only_the_partitions_of_shared_cameras_and_follows_share_changes(setup: dict) -> None:
    kafka, serde, metrics = setup["kafka"], setup["serde"], setup["metrics"]
    producer = make_producer(kafka, "partition-test")
    probe = make_reader(kafka, "partition-probe")
    partitions = topic_partitions(probe, VIDEO_PACKETS)
    # Shares other tests left live on this broker keep their partitions read: the cameras here avoid them.
    book = ShareBook()
    follower = ShareFollower(kafka, serde, SHARES, book, f"partition-test-{uuid.uuid4().hex[:8]}").start()
    wait_for(lambda: book.caught_up, 60, "the shares read to the end")
    follower.stop()
    live = book.live(int(time.time() * 1000))
    others = {key_partition(s["camera_id"].encode(), len(partitions)) for s in live} | partitions_read(metrics)
    cameras = cameras_in_distinct_partitions(len(partitions), others, uuid.uuid4().hex[:8])
    shared = cameras[0]
    shared_partition = key_partition(shared.encode(), len(partitions))

    share = new_share(shared, "police", "partition test", created_by="test", lifetime_s=600, masked=False)
    producer.produce(SHARES, key=share["share_id"], value=serde.serialize(SHARES, SHARE_SCHEMA, share))
    assert producer.flush(30) == 0
    unshared = {key_partition(c.encode(), len(partitions)) for c in cameras[1:]}

    def reads_the_shared_partition_only() -> bool:
        read = partitions_read(metrics)
        return shared_partition in read and not read & unshared

    wait_for(reads_the_shared_partition_only, 60, "the gateway reading the shared camera's partition, not the others'")
    before = metric(metrics, "cctv_share_gateway_video_bytes_fetched_total") or 0.0
    starts = {p: high_watermark(probe, VIDEO_PACKETS, p) for p in partitions}

    # The unshared cameras' packets first: a gateway reading every partition would fetch them before the
    # shared camera's, so its counter would pass the shared camera's bytes only with theirs in it.
    start_us = time.time_ns() // 1000
    landed: dict[str, set[int]] = {camera: set() for camera in cameras}
    for camera in [*cameras[1:], shared]:
        for packet in sample_packets(camera, start_us):
            producer.produce(
                VIDEO_PACKETS,
                key=camera.encode(),
                value=serde.serialize(VIDEO_PACKETS, "VideoPacket", packet.as_record()),
                on_delivery=lambda error, message, c=camera: landed[c].add(message.partition()),
            )
            producer.poll(0)
        assert producer.flush(60) == 0
    # The producers' partitioner is the one the gateway computes (CRC-32 of the camera id).
    assert landed == {c: {key_partition(c.encode(), len(partitions))} for c in cameras}
    ends = {p: high_watermark(probe, VIDEO_PACKETS, p) for p in partitions}
    everything = fetched_by_a_reader_of_every_partition(kafka, starts, ends)
    shared_bytes = everything[shared_partition]
    assert shared_bytes > 0 and everything["total"] >= 0.9 * len(cameras) * shared_bytes

    def gateway_fetched() -> float:
        return (metric(metrics, "cctv_share_gateway_video_bytes_fetched_total") or 0.0) - before

    wait_for(lambda: gateway_fetched() >= 0.9 * shared_bytes, 60, "the gateway fetching the shared camera's video")
    fetched = gateway_fetched()
    print(
        f"\nvideo bytes fetched for 1 shared camera of {len(cameras)}: gateway {fetched:.0f}, "
        f"a reader of every partition {everything['total']} ({everything['total'] / fetched:.1f}x)"
    )
    assert fetched <= 1.2 * shared_bytes < everything["total"] / 3

    # The share ends: the gateway lets go of the partition.
    update = ended(share, "REVOKED", "test", int(time.time() * 1000))
    producer.produce(SHARES, key=share["share_id"], value=serde.serialize(SHARES, SHARE_SCHEMA, update))
    assert producer.flush(30) == 0
    wait_for(
        lambda: shared_partition not in partitions_read(metrics), 30, "the gateway letting go of the shared partition"
    )
    probe.close()


def test_an_unmasked_link_stops_playing_when_the_routing_file_withdraws_unmasked_release(setup: dict) -> None:
    kafka, serde, edge, routes = setup["kafka"], setup["serde"], setup["edge"], setup["routes"]
    producer = make_producer(kafka, "unmasked-test")
    camera = f"unmasked-{uuid.uuid4().hex[:8]}"
    police = new_share(camera, "police", "case 9", created_by="test", lifetime_s=600, masked=False)
    fire = new_share(camera, "fire", "case 9", created_by="test", lifetime_s=600, masked=False)
    for share in (police, fire):
        producer.produce(SHARES, key=share["share_id"], value=serde.serialize(SHARES, SHARE_SCHEMA, share))
    assert producer.flush(30) == 0
    tokens = ShareTokens(SHARE_KEY)

    def page(share: dict) -> httpx.Response:
        return httpx.get(f"{edge}/s/{tokens.token(share['share_id'])}/", timeout=10)

    wait_for(lambda: page(police).status_code == 200, 30, "the police's unmasked link live")
    refused = page(fire)  # "fire" never had `unmasked: true` (a share made with a wrong agency list)
    assert refused.status_code == 403 and "no longer allows unmasked video" in refused.text
    try:
        routes.write_text(yaml.safe_dump(ROUTES | {"endpoints": {"police": {"unmasked": False}, "fire": {}}}))
        withdrawn = wait_for(
            lambda: (answer := page(police)).status_code == 403 and answer, 30, "the link refused after withdrawal"
        )
        assert "Ask the control room for a masked share" in withdrawn.text
    finally:
        routes.write_text(yaml.safe_dump(ROUTES))
    wait_for(lambda: page(police).status_code == 200, 30, "the link playing again once the flag is back")
    for share in (police, fire):
        update = ended(share, "REVOKED", "test", int(time.time() * 1000))
        producer.produce(SHARES, key=share["share_id"], value=serde.serialize(SHARES, SHARE_SCHEMA, update))
    assert producer.flush(30) == 0
