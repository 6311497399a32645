"""Schemas evolve BACKWARD-compatibly: the current schema must read data written with the previous
committed version of the same file (Avro schema resolution, as fastavro implements it)."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import fastavro
import pytest
from fastavro.utils import generate_many

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = sorted((REPO / "schemas").glob("*.avsc"))


def previous_committed_version(path: Path) -> dict | None:
    """The newest committed version of the file that differs from the working copy (None if new)."""
    relative = path.relative_to(REPO).as_posix()
    try:
        commits = subprocess.run(
            ["git", "log", "--format=%H", "--", relative], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("schema evolution needs the git history (run the tests in a git clone)")
    current = json.loads(path.read_text())
    for commit in commits:
        shown = subprocess.run(["git", "show", f"{commit}:{relative}"], cwd=REPO, capture_output=True, text=True)
        if shown.returncode == 0:
            old = json.loads(shown.stdout)
            if old != current:
                return old
    return None


def can_read(new: dict, old: dict, samples: int = 25) -> None:
    """Raise if data written with `old` cannot be read with `new`."""
    writer = fastavro.parse_schema(old)
    reader = fastavro.parse_schema(new)
    for record in generate_many(writer, samples):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, writer, record)
        buffer.seek(0)
        fastavro.schemaless_reader(buffer, writer, reader)


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_backward_compatible_with_previous_version(path: Path) -> None:
    current = json.loads(path.read_text())
    old = previous_committed_version(path)
    can_read(current, old if old is not None else current)


def test_the_check_catches_an_incompatible_change() -> None:
    """Adding a field without a default breaks old data: the check above must notice such a change."""
    old = json.loads((REPO / "schemas" / "camera_activity.avsc").read_text())
    new = json.loads(json.dumps(old))
    new["fields"].append({"name": "operator", "type": "string", "doc": "no default: incompatible"})
    with pytest.raises(Exception, match="operator"):
        can_read(new, old)
    compatible = json.loads(json.dumps(old))
    compatible["fields"].append({"name": "operator", "type": ["null", "string"], "default": None, "doc": "ok"})
    can_read(compatible, old)
