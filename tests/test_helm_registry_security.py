"""The chart's secured-registry settings: the CA and credentials reach every pod only as Secret references
and mounted files, only the topics Job registers schemas (as the writer), and bad combinations are
refused by values.schema.json with the key in the message."""

from __future__ import annotations

from libs.settings import CommonSettings, ignored_environment
from tests.test_helm_chart import (
    VALUE_SETS,
    env_of,
    of_kind,
    pod_spec,
    render,
    render_failure,
)


def _workloads() -> dict[str, dict]:
    manifests = render(VALUE_SETS["production"])  # https registry, its CA and a schema writer
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] in ("Deployment", "Job")}


def test_only_the_topics_job_registers_schemas_as_the_writer() -> None:
    workloads = _workloads()
    topics_jobs = [name for name in workloads if name.endswith("-topics-create")]
    assert len(topics_jobs) == 1
    for name, workload in workloads.items():
        for container in pod_spec(workload)["containers"]:
            env = env_of(container)
            registry_names = {n: "x" for n in env if n.startswith("CCTV_REGISTRY__")}
            assert ignored_environment(CommonSettings, registry_names) == [], name  # every one is a setting
            user, password = env["CCTV_REGISTRY__USERNAME"], env["CCTV_REGISTRY__PASSWORD"]
            assert "value" not in user and "value" not in password, f"{name}: registry credentials inline"
            if name in topics_jobs:
                assert user["valueFrom"]["secretKeyRef"] == {"name": "cctv-schema-writer", "key": "username"}
                assert password["valueFrom"]["secretKeyRef"] == {"name": "cctv-schema-writer", "key": "password"}
                assert "CCTV_REGISTRY__AUTO_REGISTER" not in env
            else:
                assert password["valueFrom"]["secretKeyRef"] == {"name": "cctv-registry", "key": "password"}
                assert env["CCTV_REGISTRY__AUTO_REGISTER"]["value"] == "false", name


def test_registry_ca_is_mounted_from_its_secret_into_every_pod() -> None:
    for name, workload in _workloads().items():
        spec = pod_spec(workload)
        volume = next(v for v in spec["volumes"] if v["name"] == "registry-ca")
        assert volume["secret"] == {"secretName": "cctv-registry-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
        for container in spec["containers"]:
            assert env_of(container)["CCTV_REGISTRY__SSL_CA_LOCATION"]["value"] == "/etc/cctv/registry-ca/ca.crt"
            mount = next(m for m in container["volumeMounts"] if m["name"] == "registry-ca")
            assert mount == {"name": "registry-ca", "mountPath": "/etc/cctv/registry-ca", "readOnly": True}, name


def test_without_registry_tls_or_writer_nothing_changes_for_the_services() -> None:
    for workload in of_kind(render(VALUE_SETS["default"]), "Deployment").values():
        for container in pod_spec(workload)["containers"]:
            env = env_of(container)
            assert "CCTV_REGISTRY__SSL_CA_LOCATION" not in env and "CCTV_REGISTRY__AUTO_REGISTER" not in env


def test_schema_refuses_incomplete_registry_security() -> None:
    # A writer without read credentials for the services would leave them unable to look schemas up.
    assert "/registry/existingSecret" in render_failure(["registry.writerSecret=cctv-schema-writer"])
    # A private CA only makes sense for https.
    message = render_failure(["registry.tls.caSecret=cctv-registry-ca"])
    assert "/registry/url" in message and "does not match pattern" in message
    assert "/registry/tls/caSecret" in render_failure(["registry.tls.caSecret=Bad_Name"])
    assert "additional properties 'cafile'" in render_failure(["registry.tls.cafile=x"])
