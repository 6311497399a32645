"""Fetch real test stills (bus.jpg, zidane.jpg) from the pinned `ultralytics` wheel on PyPI, and stills
with licence plates from pinned Debian and PyPI packages (PLATE_STILLS).

The images are AGPL-3.0 (they ship inside the ultralytics wheel), so they are never committed:
they are pulled into a local, git-ignored cache the first time a test needs them.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
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


# Stills with licence plates (and more faces), each from a pinned registry package whose licence allows
# redistribution; fetched like the ultralytics stills so the cache holds one copy of everything.
PLATE_STILLS: dict[str, tuple[str, str, str]] = {
    # name: (source kind, package==version, member inside the package)
    "licenseplate_motion.jpg": (
        "deb",
        "opencv-doc=4.6.0+dfsg-12",  # Debian, Apache-2.0 AND BSD-3-Clause (OpenCV samples/data)
        "./usr/share/doc/opencv-doc/examples/data/licenseplate_motion.jpg",
    ),
    "messi5.jpg": ("deb", "opencv-doc=4.6.0+dfsg-12", "./usr/share/doc/opencv-doc/examples/data/messi5.jpg"),
    "fast_alpr_test_image.png": ("sdist", "fast-alpr==0.4.0", "fast_alpr-0.4.0/assets/test_image.png"),  # PyPI, MIT
    "open_image_models_car_image.webp": (  # PyPI, MIT
        "sdist",
        "open-image-models==0.6.0",
        "open_image_models-0.6.0/test/assets/car_image.webp",
    ),
}


def _run(command: list[str], what: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise AssetFetchError(
            f"`{' '.join(command)}` failed (exit {completed.returncode}) fetching {what}:\n{completed.stderr.strip()}"
        )


def _package_file(kind: str, spec: str, cache_dir: Path) -> Path:
    """The cached .deb (apt-get download) or source archive (pip download --no-binary) of `spec`."""
    name, version = spec.split("==") if kind == "sdist" else spec.split("=")
    if kind == "deb":
        pattern = f"{name}_{version.replace(':', '%3a')}_*.deb"
        command = ["apt-get", "download", spec]
        cwd: Path | None = cache_dir
    else:
        pattern = f"{name.replace('-', '_')}-{version}.tar.gz"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:"]
        command += ["--disable-pip-version-check", "--quiet", spec, "--dest", str(cache_dir)]
        cwd = None
    found = sorted(cache_dir.glob(pattern))
    if not found:
        completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
        if completed.returncode != 0:
            raise AssetFetchError(
                f"`{' '.join(command)}` failed (exit {completed.returncode}); the plate stills come from "
                f"registry packages (Debian, PyPI), which must be reachable:\n{completed.stderr.strip()}"
            )
        found = sorted(cache_dir.glob(pattern))
    if not found:
        raise AssetFetchError(f"{' '.join(command)} reported success but no {pattern} is in {cache_dir}")
    return found[0]


def _member(kind: str, archive_path: Path, member: str) -> bytes:
    if kind == "sdist":
        with tarfile.open(archive_path) as archive:
            handle = archive.extractfile(member)
            if handle is None:
                raise AssetFetchError(f"{archive_path.name} has no file {member}")
            return handle.read()
    # A .deb's files are in its data tarball: dpkg-deb streams it without unpacking the whole package.
    completed = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive_path)], capture_output=True, check=False)
    if completed.returncode != 0:
        raise AssetFetchError(f"dpkg-deb could not read {archive_path.name}: {completed.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(completed.stdout)) as archive:
        handle = archive.extractfile(member)
        if handle is None:
            raise AssetFetchError(f"{archive_path.name} has no file {member}")
        return handle.read()


def fetch_plate_stills(cache_dir: Path = DEFAULT_CACHE_DIR) -> dict[str, Path]:
    """Return {name: path} for PLATE_STILLS, downloading their packages only when not cached."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    ignore_file = cache_dir / ".gitignore"
    if not ignore_file.exists():
        ignore_file.write_text("*\n")
    stills = {}
    for name, (kind, spec, member) in PLATE_STILLS.items():
        target = stills[name] = cache_dir / name
        if target.is_file() and target.stat().st_size > 0:
            continue
        try:
            data = _member(kind, _package_file(kind, spec, cache_dir), member)
        except KeyError as missing:
            raise AssetFetchError(f"{spec} has no {member}") from missing
        partial = target.with_suffix(target.suffix + ".part")
        partial.write_bytes(data)
        partial.replace(target)
    return stills


if __name__ == "__main__":
    for still_name, still_path in fetch_stills().items():
        print(f"{still_name}: {still_path}")
    for still_name, still_path in fetch_plate_stills().items():
        print(f"{still_name}: {still_path}")
