"""Camera credentials by reference (`credentials_ref` in the inventory), never inside the inventory.

Two sources, looked up at every connection attempt, so a change reaches a running ingest without a
restart (a FAILED camera comes ONLINE at its next retry):

1. a directory with one file per reference, content `user:password` — exactly what a mounted
   Kubernetes Secret looks like (the kubelet swaps the files in place when the Secret changes). Files are
   re-read only when they change (inode, size, mtime), so thousands of cameras cost a stat each;
2. the environment variable CCTV_CAMERA_CREDENTIALS__<REF> (upper case), for the simple case. The
   environment of a running process cannot change, so this one is read at start in effect.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

CREDENTIALS_ENV_PREFIX = "CCTV_CAMERA_CREDENTIALS__"
# Only these schemes carry user:password in the URL; anything else (file://, a device) never gets them.
SCHEMES_WITH_CREDENTIALS = ("rtsp", "rtsps", "http", "https")


class CredentialsNotFound(LookupError):
    """No credentials for a reference; the message says where they were looked for (no secret in it)."""


class CredentialResolver:
    def __init__(self, directory: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.environ = environ
        self._cache: dict[Path, tuple[tuple[int, int, int], str]] = {}
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> str:
        """'user:password' for `ref`; raises CredentialsNotFound naming the file and variable it tried."""
        for path in self._candidates(ref):
            value = self._read(path)
            if value is not None:
                return value
        environ = self.environ if self.environ is not None else os.environ
        value = environ.get(CREDENTIALS_ENV_PREFIX + ref.upper())
        if value is not None:
            return value
        places = [f"{CREDENTIALS_ENV_PREFIX}{ref.upper()}"]
        if self.directory is not None:
            places.insert(0, f"file {self.directory / ref}")
        raise CredentialsNotFound(f"credentials {ref!r} not found (looked for {' and '.join(places)})")

    def _candidates(self, ref: str) -> list[Path]:
        if self.directory is None:
            return []
        names = dict.fromkeys((ref, ref.upper(), ref.lower()))  # a Secret's keys keep their own case
        return [self.directory / name for name in names]

    def _read(self, path: Path) -> str | None:
        try:
            stat = path.stat()  # follows the Secret's ..data symlink to the current version
        except OSError:
            return None
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        with self._lock:
            self._cache[path] = (key, value)
        return value or None


def takes_credentials(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES_WITH_CREDENTIALS if "://" in url else False
