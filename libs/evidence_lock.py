"""S3 Object Lock for evidence: a legal hold enforced by the object store itself, not only by our
software. In a bucket created with Object Lock (versioning on), an object version under legal hold
cannot be deleted or overwritten in place through the S3 API by anyone holding the bucket's credentials
until the hold is lifted; a plain DELETE only adds a delete marker, and the held version stays readable.

Measured with SeaweedFS (the project's S3 server): create_bucket(ObjectLockEnabledForBucket) enables
versioning; PutObjectLegalHold/GetObjectLegalHold work; DeleteObject(VersionId) of a held version is
refused with 403 AccessDenied, and succeeds after the hold is set OFF (tests/test_evidence_object_lock.py).

Retention deletes a clip irrecoverably: every version and delete marker under its prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError


class ObjectLockError(Exception):
    """The store refused or failed a lock operation (message without credentials)."""


def _describe(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', '?')}: {details.get('Message', '')}".strip()
    return type(error).__name__


class ObjectLock:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket
        self._enabled: bool | None = None

    def enabled(self) -> bool:
        """Whether the bucket has Object Lock (cached: it cannot be switched off once on)."""
        if self._enabled is None:
            try:
                config = self.client.get_object_lock_configuration(Bucket=self.bucket)
                self._enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except ClientError:
                self._enabled = False  # no configuration, or a server without Object Lock: the marker only
            except BotoCoreError as error:
                raise ObjectLockError(f"object lock configuration of {self.bucket}: {_describe(error)}") from None
        return self._enabled

    def versions(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every version and delete marker under `prefix`: {"Key", "VersionId", "IsLatest", "marker"}."""
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
                for version in page.get("Versions", []):
                    yield version | {"marker": False}
                for marker in page.get("DeleteMarkers", []):
                    yield marker | {"marker": True}
        except (ClientError, BotoCoreError) as error:
            raise ObjectLockError(f"listing versions under {prefix}: {_describe(error)}") from None

    def set_legal_hold(self, prefix: str, on: bool, skip: tuple[str, ...] = ()) -> list[str]:
        """Legal hold ON (the current versions) or OFF (every version) under `prefix`; returns the keys."""
        done = []
        for version in self.versions(prefix):
            if version["marker"] or version["Key"].endswith(skip) or (on and not version["IsLatest"]):
                continue
            try:
                self.client.put_object_legal_hold(
                    Bucket=self.bucket,
                    Key=version["Key"],
                    VersionId=version["VersionId"],
                    LegalHold={"Status": "ON" if on else "OFF"},
                )
            except (ClientError, BotoCoreError) as error:
                raise ObjectLockError(f"legal hold on {version['Key']}: {_describe(error)}") from None
            done.append(version["Key"])
        return done

    def legal_hold(self, key: str) -> bool:
        try:
            status = self.client.get_object_legal_hold(Bucket=self.bucket, Key=key)["LegalHold"]["Status"]
        except ClientError:
            return False
        return bool(status == "ON")

    def purge(self, prefix: str, last: tuple[str, ...] = ()) -> list[str]:
        """Delete every version and delete marker under `prefix` (keys ending in `last` at the end), so
        nothing is recoverable; returns the keys. A held version makes this fail (AccessDenied)."""
        found = sorted(self.versions(prefix), key=lambda v: v["Key"].endswith(last))
        for version in found:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=version["Key"], VersionId=version["VersionId"])
            except (ClientError, BotoCoreError) as error:
                raise ObjectLockError(
                    f"deleting {version['Key']} ({version['VersionId']}): {_describe(error)}"
                ) from None
        return sorted({v["Key"] for v in found}, key=lambda k: k.endswith(last))
