"""Reproducible random records: fastavro's generator draws from the global `random`, so each call here
runs it under its own fixed seed (and restores the global state), and a failing record comes back on
every run."""

from __future__ import annotations

import random
import zlib
from typing import Any

from fastavro.utils import generate_many


def seed_for(name: str) -> int:
    """A stable seed per schema name (hash() of a str changes between processes)."""
    return zlib.crc32(name.encode())


def sample_records(schema: Any, count: int, seed: int) -> list[Any]:
    saved = random.getstate()
    random.seed(seed)
    try:
        return list(generate_many(schema, count))
    finally:
        random.setstate(saved)
