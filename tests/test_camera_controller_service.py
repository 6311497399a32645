"""The camera-controller against a real kube-apiserver and a real Kafka broker, with a real ingest:
kubectl apply/edit/delete a Camera -> inventory records -> ingest pulls -> status back on the resource."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cctv.devstack.k8s import KubeControlPlane
from cctv.devstack.services import ServiceProcess
from libs.cameras import CameraEntry
from libs.kafka import create_topics, high_watermark
from libs.serde import AvroSerde, shipped_catalog
from libs.settings import KafkaSettings
from libs.topics import ALERTS, CAMERA_ACTIVITY, CAMERA_STATUS, CAMERAS, pipeline_topics
from tests.k8s_helpers import Kubectl, helm_template, manifests_of
from tests.kafka_helpers import TopicWatcher, wait_for
from tests.pipeline_helpers import service_env

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-360p15.mp4"
SERDE = AvroSerde(shipped_catalog())
RELEASE_PREFIX = "cctv-cctv-platform"
CONTROLLER_SA = f"{RELEASE_PREFIX}-camera-controller"
LEASE = CONTROLLER_SA  # the Lease name the chart's Role grants
SECRET = "cctv-camera-credentials"
PASSWORD = f"pw-{uuid.uuid4().hex}"


class InventoryLog:
    """Every record of cctv.cameras.v1 from now on, tombstones included, read as ingest reads them."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.records: list[tuple[str, bytes | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(
            settings.client_config()
            | {
                "group.id": f"inventory-log-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        partitions = self._consumer.list_topics(CAMERAS, timeout=10).topics[CAMERAS].partitions
        self._consumer.assign(
            [TopicPartition(CAMERAS, p, high_watermark(self._consumer, CAMERAS, p)) for p in partitions]
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(100, 0.2):
                if not message.error():
                    with self._lock:
                        self.records.append((message.key().decode(), message.value()))
        self._consumer.close()

    def of(self, camera_id: str) -> list[dict[str, Any] | None]:
        with self._lock:
            values = [v for k, v in self.records if k == camera_id]
        return [None if v is None else SERDE.deserialize(CAMERAS, "CameraConfig", v) for v in values]

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(v or b"" for _, v in self.records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def kubectl(kube_api: KubeControlPlane) -> Kubectl:
    kubectl = Kubectl(kube_api)
    kubectl.install_crd()
    return kubectl


@pytest.fixture
def platform(kubectl: Kubectl, kafka_settings: KafkaSettings, tmp_path: Path) -> tuple[str, Path]:
    """A namespace with the chart's controller RBAC and credentials Secret; a kubeconfig holding the
    controller ServiceAccount's token, so the tests prove the granted rights are enough."""
    create_topics(kafka_settings, pipeline_topics())
    namespace = kubectl.namespace("cams")
    rendered = helm_template(
        namespace, "--set", "cameras.source=crds", "--set", f"cameraCredentials.existingSecret={SECRET}"
    )
    kubectl.apply(manifests_of(rendered, {"ServiceAccount", "Role", "RoleBinding"}), "-n", namespace)
    kubectl.run("create", "secret", "generic", SECRET, "-n", namespace, f"--from-literal=LOBBY=viewer:{PASSWORD}")
    return namespace, kubectl.token_kubeconfig(namespace, CONTROLLER_SA, tmp_path)


def controller(name: str, kafka: KafkaSettings, namespace: str, kubeconfig: Path, tmp_path: Path) -> ServiceProcess:
    return ServiceProcess(
        "camera-controller",
        service_env(kafka.bootstrap_servers)
        | {
            "CCTV_INSTANCE_ID": name,
            "CCTV_CONTROLLER__KUBECONFIG": str(kubeconfig),
            "CCTV_CONTROLLER__NAMESPACE": namespace,
            "CCTV_CONTROLLER__PLATFORM_NAMESPACE": namespace,
            "CCTV_CONTROLLER__CREDENTIALS_SECRET": SECRET,
            "CCTV_CONTROLLER__LEASE_NAME": LEASE,
            "CCTV_CONTROLLER__IDENTITY": name,
            "CCTV_CONTROLLER__LEASE_DURATION_S": "6",
            "CCTV_CONTROLLER__RENEW_EVERY_S": "1",
            "CCTV_CONTROLLER__STATUS_REFRESH_S": "3",
        },
        tmp_path / f"{name}.log",
        module="services.camera_controller.main",
    ).start()


def ingest(name: str, kafka: KafkaSettings, tmp_path: Path) -> ServiceProcess:
    credentials = tmp_path / "camera-credentials"  # what the chart mounts from the credentials Secret
    credentials.mkdir(exist_ok=True)
    (credentials / "LOBBY").write_text(f"viewer:{PASSWORD}")
    return ServiceProcess(
        "ingest",
        service_env(kafka.bootstrap_servers, group=f"cctv-ingest-{name}")
        | {
            "CCTV_INSTANCE_ID": name,
            "CCTV_PULL__STATUS_INTERVAL_S": "2",
            "CCTV_CREDENTIALS_DIR": str(credentials),
        },
        tmp_path / f"{name}.log",
    ).start()


def camera(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cctv-platform.io/v1",
        "kind": "Camera",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def status_of(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any]:
    resource = kubectl.get("camera", name, namespace)
    return (resource or {}).get("status") or {}


def condition(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any] | None:
    return next((c for c in status_of(kubectl, name, namespace).get("conditions", []) if c["type"] == "Ready"), None)


def test_kubectl_manages_cameras_end_to_end(
    kubectl: Kubectl,
    platform: tuple[str, Path],
    kafka_settings: KafkaSettings,
    publish_cameras,
    unique: str,
    tmp_path: Path,
) -> None:
    namespace, kubeconfig = platform
    cam = f"cam-{unique}"
    stray = f"stray-{unique}"
    publish_cameras([CameraEntry(camera_id=stray, stream_url="rtsp://127.0.0.1:9/stray")])  # e.g. left by the CLI
    inventory = InventoryLog(kafka_settings)
    statuses = TopicWatcher(kafka_settings, CAMERA_STATUS, "CameraStatus", SERDE, lambda v: v["camera_id"] == cam)
    # A Camera made while no controller runs is published by the resync on start.
    kubectl.apply(camera("early", namespace, streamUrl="rtsp://127.0.0.1:9/early", enabled=False))
    puller = ingest(f"ingest-{unique}", kafka_settings, tmp_path)
    leader = controller(f"ctl-{unique}", kafka_settings, namespace, kubeconfig, tmp_path)
    try:
        # Resync on start: the topic converges to the cluster, which has no `stray`.
        wait_for(lambda: inventory.of(stray) == [None], 60, "the resync's tombstone for a camera without a resource")
        (early,) = wait_for(lambda: inventory.of("early"), 30, "the resync publishing a Camera made while it was down")
        assert early is not None and early["enabled"] is False
        wait_for(
            lambda: status_of(kubectl, "early", namespace).get("state") == "DISABLED", 30, "DISABLED in the status"
        )

        kubectl.apply(
            camera(
                cam,
                namespace,
                streamUrl=f"file://{SAMPLE}",
                loop=True,
                siteId="site-1",
                displayName="Campus road",
                sampling={"mode": "fps", "fps": 2},
                tags=["Park"],
            )
        )
        (record,) = wait_for(lambda: inventory.of(cam), 30, "the Camera published to cctv.cameras.v1")
        assert record is not None
        assert (record["camera_id"], record["name"], record["site_id"], record["stream_url"]) == (
            cam,
            "Campus road",
            "site-1",
            f"file://{SAMPLE}",
        )
        assert record["sampling"]["mode"] == "FPS" and record["sampling"]["fps"] == 2
        assert record["tags"] == ["park"] and record["loop"] is True and record["credentials_ref"] is None

        wait_for(lambda: any(s["state"] == "ONLINE" for s in statuses.snapshot()), 60, "ingest pulling the camera")
        wait_for(lambda: status_of(kubectl, cam, namespace).get("state") == "ONLINE", 30, "ONLINE in the status")
        wait_for(lambda: (status_of(kubectl, cam, namespace).get("fps") or 0) > 0, 30, "the camera's fps in the status")
        row = kubectl.run("get", "camera", cam, "-n", namespace, "--no-headers").stdout.split()
        assert row[0] == cam and row[1] == "ONLINE" and float(row[2]) > 0, row
        assert condition(kubectl, cam, namespace)["reason"] == "Published"

        # Motion from the frame-sampler and an alert from the alert-router reach the status columns too.
        produce_activity_and_alert(kafka_settings, cam)
        wait_for(
            lambda: status_of(kubectl, cam, namespace).get("activity") == "ACTIVE", 30, "the activity in the status"
        )
        since = status_of(kubectl, cam, namespace)["activitySince"]
        assert since.startswith(time.strftime("%Y-%m-%dT", time.gmtime())), since
        wait_for(
            lambda: status_of(kubectl, cam, namespace).get("lastAlert", {}).get("eventType") == "loitering",
            30,
            "the last alert in the status",
        )
        row = kubectl.run("get", "camera", cam, "-n", namespace, "--no-headers").stdout.split()
        assert row[3] == "ACTIVE" and row[4].endswith("s"), row  # LAST-ALERT shows an age, e.g. 2s

        kubectl.run("patch", "camera", cam, "-n", namespace, "--type=merge", "-p", '{"spec": {"siteId": "site-2"}}')
        wait_for(lambda: len(inventory.of(cam)) == 2, 30, "the edit republished")
        assert inventory.of(cam)[-1]["site_id"] == "site-2"

        # Credentials: only a reference goes to Kafka, and a missing key is a condition plus an Event.
        kubectl.apply(
            camera(
                "lobby",
                namespace,
                streamUrl="rtsp://127.0.0.1:9/lobby",
                credentialsSecretRef={"name": SECRET, "key": "LOBBY"},
            )
        )
        (lobby,) = wait_for(lambda: inventory.of("lobby"), 30, "the lobby camera published")
        assert lobby["credentials_ref"] == "LOBBY"
        kubectl.apply(camera("lobby-copy", namespace, cameraId="lobby", streamUrl="rtsp://127.0.0.1:9/elsewhere"))
        duplicate = wait_for(lambda: condition(kubectl, "lobby-copy", namespace), 30, "a condition on the duplicate")
        assert (duplicate["status"], duplicate["reason"]) == ("False", "DuplicateCameraId")
        assert f"{namespace}/lobby" in duplicate["message"] and len(inventory.of("lobby")) == 1
        kubectl.apply(
            camera(
                "nokey",
                namespace,
                streamUrl="rtsp://127.0.0.1:9/nokey",
                credentialsSecretRef={"name": SECRET, "key": "NOT_THERE"},
            )
        )
        refused = wait_for(lambda: condition(kubectl, "nokey", namespace), 30, "a condition on the refused Camera")
        assert (refused["status"], refused["reason"]) == ("False", "CredentialsKeyMissing")
        assert status_of(kubectl, "nokey", namespace)["state"] == "INVALID"
        events = wait_for(
            lambda: json.loads(
                kubectl.run(
                    "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=nokey", "-o", "json"
                ).stdout
            )["items"],
            30,
            "an Event on the refused Camera",
        )
        assert events[0]["type"] == "Warning" and "NOT_THERE" in events[0]["message"]
        assert inventory.of("nokey") == []

        kubectl.run("delete", "camera", cam, "-n", namespace)
        wait_for(lambda: inventory.of(cam)[-1] is None, 30, "a tombstone after kubectl delete")
        wait_for(lambda: statuses.snapshot()[-1]["state"] == "STOPPED", 30, "ingest to stop pulling the camera")
        assert PASSWORD.encode() not in inventory.raw()
        kubectl.run("delete", "cameras", "--all", "-n", namespace)  # leave no camera for later tests' ingest
        wait_for(lambda: inventory.of("lobby")[-1] is None, 30, "the lobby camera's tombstone")
    finally:
        for process in (leader, puller):
            process.stop()
        statuses.close()
        inventory.close()
    assert PASSWORD not in leader.log_text()
    assert leader.process is not None and leader.process.returncode == 0, leader.log_text()[-3000:]


def produce_activity_and_alert(kafka: KafkaSettings, camera_id: str) -> None:
    now_ms = int(time.time() * 1000)
    producer = Producer(kafka.client_config())
    producer.produce(
        CAMERA_ACTIVITY,
        key=camera_id.encode(),
        value=SERDE.serialize(
            CAMERA_ACTIVITY,
            "CameraActivity",
            {
                "camera_id": camera_id,
                "state": "ACTIVE",
                "motion_score": 0.4,
                "since": now_ms * 1000,
                "timestamp": now_ms * 1000,
            },
        ),
    )
    alert = {
        "alert_id": f"al-{camera_id}",
        "kind": "NEW",
        "sequence": 0,
        "event_type": "loitering",
        "rule_id": f"{camera_id}/road/loitering",
        "severity": "HIGH",
        "camera_id": camera_id,
        "camera_name": "Campus road",
        "site_id": "site-1",
        "location": None,
        "tags": ["park"],
        "zone_id": f"{camera_id}/road",
        "zone_name": "road",
        "started_at": now_ms * 1000,
        "detected_at": now_ms * 1000,
        "ended_at": None,
        "track_ids": [],
        "objects": [],
        "frame": None,
        "snapshot_jpeg": None,
        "description": "loitering in road",
        "destinations": [],
        "produced_at": now_ms * 1000,
    }
    producer.produce(ALERTS, key=alert["alert_id"].encode(), value=SERDE.serialize(ALERTS, "Alert", alert))
    assert producer.flush(30) == 0


def published_events(kubectl: Kubectl, namespace: str, name: str) -> int:
    events = json.loads(
        kubectl.run(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name},reason=Published",
            "-o",
            "json",
        ).stdout
    )["items"]
    return len(events)


def lease_holder(kubectl: Kubectl, namespace: str) -> str | None:
    lease = kubectl.get("lease", LEASE, namespace)
    return lease["spec"].get("holderIdentity") if lease else None


def test_two_replicas_elect_one_leader_and_the_standby_takes_over(
    kubectl: Kubectl,
    platform: tuple[str, Path],
    kafka_settings: KafkaSettings,
    unique: str,
    tmp_path: Path,
) -> None:
    namespace, kubeconfig = platform
    inventory = InventoryLog(kafka_settings)
    names = (f"a-{unique}", f"b-{unique}")
    replicas = {name: controller(name, kafka_settings, namespace, kubeconfig, tmp_path) for name in names}
    try:
        first = wait_for(lambda: lease_holder(kubectl, namespace), 60, "a leader")
        assert first in names
        kubectl.apply(camera("gate", namespace, streamUrl="rtsp://127.0.0.1:9/gate"))
        wait_for(lambda: inventory.of("gate"), 30, "the camera published")
        leaders = [name for name, p in replicas.items() if "became leader" in p.log_text()]
        assert leaders == [first], "exactly one replica leads"
        assert len(inventory.of("gate")) == 1, "the standby must not publish too"

        replicas[first].kill()
        second = next(name for name in names if name != first)
        took_over_at = time.monotonic()
        wait_for(lambda: lease_holder(kubectl, namespace) == second, 30, "the standby to take the Lease")
        print(f"\nstandby took over {time.monotonic() - took_over_at:.1f} s after the leader was killed (Lease 6 s)")
        wait_for(lambda: "resync:" in replicas[second].log_text(), 30, "the new leader's resync")
        # The status already says Published for this generation: a takeover rewrites nothing, sends no Event.
        assert published_events(kubectl, namespace, "gate") == 1
        kubectl.run("patch", "camera", "gate", "-n", namespace, "--type=merge", "-p", '{"spec": {"siteId": "north"}}')
        wait_for(
            lambda: len(inventory.of("gate")) >= 2 and inventory.of("gate")[-1]["site_id"] == "north",
            60,
            "the new leader to publish the edit",
        )
        wait_for(lambda: published_events(kubectl, namespace, "gate") == 2, 30, "an Event for the new generation")
        kubectl.run("delete", "camera", "gate", "-n", namespace)
        wait_for(lambda: inventory.of("gate")[-1] is None, 30, "the tombstone from the new leader")
    finally:
        for process in replicas.values():
            process.stop()
        inventory.close()
    # A clean stop hands the Lease back instead of letting it expire.
    assert lease_holder(kubectl, namespace) in (None, "")
