"""Evidence objects in any S3-compatible store (boto3): clips, manifests, legal holds.

Layout under the configured prefix (clips are found by alert id):
  <prefix><alert_id>/segment-000.mp4 ...   the clip, one object per segment
  <prefix><alert_id>/manifest.json          canonical JSON (see manifest.py)
  <prefix><alert_id>/manifest.sig           sha256 + Ed25519 signature of manifest.json
  <prefix><alert_id>/hold.json              present while the clip is on legal hold (who, why, when)
Keys are deterministic, so a clip written twice (a writer restarted mid-clip) overwrites itself with
the same bytes instead of leaving duplicates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field, SecretStr

from libs.evidence import check_alert_id
from libs.evidence_lock import ObjectLock, ObjectLockError

log = logging.getLogger(__name__)
T = TypeVar("T")

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
HOLD = "hold.json"
# A missing bucket means nothing was stored yet: absent, not an outage.
_ABSENT = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


class S3Settings(BaseModel):
    """Where evidence is stored. Credentials come from a Secret (CCTV_S3__ACCESS_KEY_ID / SECRET_ACCESS_KEY)."""

    endpoint_url: str | None = None  # None: AWS itself; e.g. http://seaweedfs:8333 or https://minio.example
    region: str = "us-east-1"
    bucket: str = "cctv-evidence"
    prefix: str = "evidence/"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    # Path-style URLs work with every S3-compatible server (virtual hosts need DNS per bucket).
    path_style: bool = True
    create_bucket: bool = True
    # New buckets get S3 Object Lock, so a legal hold is enforced by the store (libs/evidence_lock.py).
    object_lock: bool = True
    presign_ttl_s: int = Field(default=300, ge=30, le=86_400)
    timeout_s: float = Field(default=10.0, gt=0)


class StorageUnavailable(Exception):
    """The object store did not answer or refused the request; the clip is kept and retried."""


class RangeNotSatisfiable(ValueError):
    """A byte range that starts beyond the object's end (HTTP 416)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the range starts beyond the object's {size} bytes")
        self.size = size


class EvidenceStore:
    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id.get_secret_value() if settings.access_key_id else None,
            aws_secret_access_key=settings.secret_access_key.get_secret_value() if settings.secret_access_key else None,
            config=Config(
                s3={"addressing_style": "path" if settings.path_style else "auto"},
                connect_timeout=settings.timeout_s,
                read_timeout=settings.timeout_s,
                retries={"max_attempts": 2, "mode": "standard"},
                # SeaweedFS and older S3-compatible servers reject the newer default checksum trailers.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self._bucket_ready = False
        self.lock = ObjectLock(self.client, self.bucket)

    def key(self, alert_id: str, name: str) -> str:
        return f"{self.prefix}{check_alert_id(alert_id)}/{name}"

    def ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if (
                error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket")
                or not self.settings.create_bucket
            ):
                raise StorageUnavailable(f"bucket {self.bucket}: {_describe(error)}") from None
            try:
                if self.settings.object_lock:
                    self.client.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True)
                else:
                    self.client.create_bucket(Bucket=self.bucket)
            except ClientError as create_error:
                if create_error.response.get("Error", {}).get("Code") not in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    raise StorageUnavailable(f"creating bucket {self.bucket}: {_describe(create_error)}") from None
        except BotoCoreError as error:
            raise StorageUnavailable(f"{self.settings.endpoint_url or 'S3'}: {error}") from None
        self._bucket_ready = True

    def put(self, key: str, data: bytes, content_type: str, sha256: str | None = None) -> None:
        self.ensure_bucket()
        metadata = {"sha256": sha256} if sha256 else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata)
        except (ClientError, BotoCoreError) as error:
            self._bucket_ready = False
            raise StorageUnavailable(f"storing {key}: {_describe(error)}") from None

    def stored_sha256(self, key: str) -> str | None:
        """The sha256 recorded when the object was stored, or None if the object is absent."""
        head = self._answer(f"checking {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        return None if head is None else head.get("Metadata", {}).get("sha256", "")

    def get(self, key: str) -> bytes | None:
        return self._answer(
            f"reading {key}", lambda: self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        )

    def get_range(self, key: str, first: int, last: int | None = None) -> tuple[bytes, int] | None:
        """Bytes first..last (inclusive; None: to the end) of an object and its total size; None if absent.
        Raises RangeNotSatisfiable when first lies beyond the end."""
        wanted = f"bytes={first}-" + ("" if last is None else str(last))

        def fetch() -> Any:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key, Range=wanted)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "InvalidRange":
                    raise RangeNotSatisfiable(self.size(key) or 0) from None
                raise

        response = self._answer(f"reading {key}", fetch)
        if response is None:
            return None
        total = int(str(response.get("ContentRange", "")).rpartition("/")[2] or response["ContentLength"])
        return response["Body"].read(), total

    def size(self, key: str) -> int | None:
        head = self._answer(f"checking {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        return None if head is None else int(head["ContentLength"])

    def _answer(self, what: str, call: Callable[[], T]) -> T | None:
        """`call()`'s result; None when the object (or its bucket) is absent; StorageUnavailable, with a
        message free of signatures and credentials, for anything else."""
        try:
            return call()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _ABSENT:
                return None
            raise StorageUnavailable(f"{what}: {_describe(error)}") from None
        except BotoCoreError as error:
            raise StorageUnavailable(f"{what}: {error}") from None

    def manifest(self, alert_id: str) -> dict[str, Any] | None:
        data = self.get(self.key(alert_id, MANIFEST))
        return json.loads(data) if data is not None else None

    def hold(self, alert_id: str) -> dict[str, Any] | None:
        data = self.get(self.key(alert_id, HOLD))
        return json.loads(data) if data is not None else None

    def set_hold(self, alert_id: str, hold: dict[str, Any]) -> None:
        """The hold marker (who, why, when: what retention reads) and, in an Object Lock bucket, an S3
        legal hold on every current object of the clip, so the store itself refuses to delete them."""
        self.put(self.key(alert_id, HOLD), json.dumps(hold, sort_keys=True).encode(), "application/json")
        if self._locking():
            try:
                self.lock.set_legal_hold(self.key(alert_id, ""), on=True, skip=(HOLD,))
            except ObjectLockError as error:
                raise StorageUnavailable(str(error)) from None

    def clear_hold(self, alert_id: str) -> None:
        if self._locking():
            try:
                self.lock.set_legal_hold(self.key(alert_id, ""), on=False, skip=(HOLD,))
            except ObjectLockError as error:
                raise StorageUnavailable(str(error)) from None
        self._delete([self.key(alert_id, HOLD)])

    def _locking(self) -> bool:
        self.ensure_bucket()
        try:
            return self.settings.object_lock and self.lock.enabled()
        except ObjectLockError as error:
            raise StorageUnavailable(str(error)) from None

    def alert_ids(self, lacking: str | None = None) -> Iterator[str]:
        """Every alert id with a manifest (a clip is listed only once it is complete); with `lacking`, only
        those without that object (e.g. clips whose masked copy is not made), from the same listing."""
        if lacking is not None:
            names: dict[str, set[str]] = {}
            for key in self._keys(self.prefix):
                alert_id, _, name = key[len(self.prefix) :].partition("/")
                names.setdefault(alert_id, set()).add(name)
            yield from (a for a, present in names.items() if MANIFEST in present and lacking not in present)
            return
        self.ensure_bucket()
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    rest = item["Key"][len(self.prefix) :]
                    alert_id, _, name = rest.partition("/")
                    if name == MANIFEST:
                        yield alert_id
        except (ClientError, BotoCoreError) as error:
            raise StorageUnavailable(f"listing {self.bucket}/{self.prefix}: {_describe(error)}") from None

    def _keys(self, prefix: str) -> list[str]:
        self.ensure_bucket()
        try:
            return [
                item["Key"]
                for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]
        except (ClientError, BotoCoreError) as error:
            raise StorageUnavailable(f"listing {self.bucket}/{prefix}: {_describe(error)}") from None

    def delete_clip(self, alert_id: str) -> list[str]:
        """Delete every object of the clip (segments first, the manifest last) irrecoverably (in a
        versioned Object Lock bucket: every version); returns the keys."""
        prefix = self.key(alert_id, "")
        if self._locking():
            try:
                return self.lock.purge(prefix, last=(MANIFEST, SIGNATURE))
            except ObjectLockError as error:
                raise StorageUnavailable(str(error)) from None
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as error:
            raise StorageUnavailable(f"listing {prefix}: {_describe(error)}") from None
        ordered = sorted(keys, key=lambda k: k.endswith((MANIFEST, SIGNATURE)))
        self._delete(ordered)
        return ordered

    def _delete(self, keys: list[str]) -> None:
        for key in keys:  # one by one: DeleteObjects needs Content-MD5, which not every server accepts
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except (ClientError, BotoCoreError) as error:
                raise StorageUnavailable(f"deleting {key}: {_describe(error)}") from None

    def presigned_url(self, key: str, ttl_s: int | None = None) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=ttl_s or self.settings.presign_ttl_s,
        )


def _describe(error: Exception) -> str:
    """Error text without request signatures or credentials."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', '?')}: {details.get('Message', '')}".strip()
    return type(error).__name__ + ": " + str(error).split("\n")[0]
