"""Fetch real test stills (bus.jpg, zidane.jpg) from the pinned `ultralytics` wheel on PyPI.

The images are AGPL-3.0 (they ship inside the ultralytics wheel), so they are never committed:
they are pulled into a local, git-ignored cache the first time a test needs them.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ULTRALYTICS_VERSION = "8.4.190"
STILL_NAMES: tuple[str, ...] = ("bus.jpg", "zidane.jpg")
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "test-assets"


class AssetFetchError(RuntimeError):
    """The test stills could not be downloaded or extracted."""


def _download_wheel(cache_dir: Path) -> Path:
    wheel_glob = f"ultralytics-{ULTRALYTICS_VERSION}-*.whl"
    existing = sorted(cache_dir.glob(wheel_glob))
    if existing:
        return existing[0]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        f"ultralytics=={ULTRALYTICS_VERSION}",
        "--dest",
        str(cache_dir),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise AssetFetchError(
            f"`{' '.join(command)}` failed (exit {completed.returncode}); the test stills come from "
            f"the ultralytics wheel on PyPI, so PyPI must be reachable:\n{completed.stderr.strip()}"
        )
    downloaded = sorted(cache_dir.glob(wheel_glob))
    if not downloaded:
        raise AssetFetchError(f"pip reported success but no {wheel_glob} is in {cache_dir}")
    return downloaded[0]


def fetch_stills(cache_dir: Path = DEFAULT_CACHE_DIR) -> dict[str, Path]:
    """Return {"bus.jpg": path, "zidane.jpg": path}, downloading the wheel only when not cached."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Keep the AGPL images and the wheel out of git even if the repo's .gitignore misses the cache.
    ignore_file = cache_dir / ".gitignore"
    if not ignore_file.exists():
        ignore_file.write_text("*\n")
    stills = {name: cache_dir / name for name in STILL_NAMES}
    if all(path.is_file() and path.stat().st_size > 0 for path in stills.values()):
        return stills
    wheel = _download_wheel(cache_dir)
    with zipfile.ZipFile(wheel) as archive:
        for name, target in stills.items():
            member = f"ultralytics/assets/{name}"
            try:
                data = archive.read(member)
            except KeyError as missing:
                raise AssetFetchError(f"{wheel.name} has no {member}") from missing
            partial = target.with_suffix(target.suffix + ".part")
            partial.write_bytes(data)
            partial.replace(target)  # atomic: a half-written still is never seen as cached
    return stills


if __name__ == "__main__":
    for still_name, still_path in fetch_stills().items():
        print(f"{still_name}: {still_path}")
